//! The store ports: every piece of state Tessera keeps, in role traits — [`MetaStore`],
//! [`ConfigStore`], [`UserStore`], [`TokenStore`], [`FlowStore`], [`OutboxStore`],
//! [`LockStore`], [`AuditStore`], [`AdminStore`], [`WebStateStore`] — and their union
//! [`Store`], the handle the engine holds. Implemented for SQLite and PostgreSQL by
//! `tessera-store`; the contract tests there run on both. A service that needs one part should
//! take that role only.
//!
//! Finders return `Ok(None)` for "not there"; a database fault is always an `Err`. State changes
//! that decide an authentication (accepting an OTP, advancing a transaction, counting a failure)
//! are single conditional statements, so they stay correct with many nodes on one database.
//!
//! Durability: a write is committed when it returns, except the *deciding* writes marked below
//! (`reserve_token_attempt`, `release_token_attempt`, `accept_otp`, `record_otp_failures`,
//! `set_resync_state`, `reserve_attempt`, `release_attempt`, `clear_locks`). Their answer is final when they return (every later write sees them), but the
//! embedded store may commit them only together with the caller's next write. A caller
//! therefore makes a committed write (the audit record of the decision) before it tells anyone
//! the outcome, and then checks that [`MetaStore::lost_writes`] did not move since before the
//! deciding writes. Until then reads may not see them; [`MetaStore::flush`] waits for that. This
//! saves a commit wait per login.

use crate::ids::{Serial, SourceName, TransactionId, UserId, UserRef};
use crate::model::{
    AdminAccount, AdminSession, AttemptResult, AuditQuery, AuditRecord, LocalUser, NewLocalUser,
    NewToken, OutboxMessage, SentCode, Token, TokenKind, TokenPatch, Transaction, TxStatus,
    UserPatch,
};
use async_trait::async_trait;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    KeyMismatch(String),
    #[error("a sealed secret could not be opened ({0}); the master key does not match the data")]
    Unseal(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Fails when a deciding write answered since `before` (a [`MetaStore::lost_writes`] reading) was
/// lost: called after the caller's committed write, before it answers.
pub fn ensure_kept(store: &dyn Store, before: u64) -> StoreResult<()> {
    if store.lost_writes() == before {
        Ok(())
    } else {
        Err(StoreError::Backend(
            "a write of this request could not be committed; nothing was decided".into(),
        ))
    }
}

/// A refresh token as kept: the hash of the token and what it renews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: String,
    pub client_id: String,
    pub username: String,
    pub realm: String,
    pub scope: String,
    pub expires_at: i64,
}

/// The kinds of named configuration documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigKind {
    UserSource,
    Realm,
    Application,
    RadiusClient,
    DeliveryProfile,
    SyslogProfile,
    ApiClient,
    SamlSp,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 8] = [
        ConfigKind::UserSource,
        ConfigKind::Realm,
        ConfigKind::Application,
        ConfigKind::RadiusClient,
        ConfigKind::DeliveryProfile,
        ConfigKind::SyslogProfile,
        ConfigKind::ApiClient,
        ConfigKind::SamlSp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::UserSource => "user_source",
            ConfigKind::Realm => "realm",
            ConfigKind::Application => "application",
            ConfigKind::RadiusClient => "radius_client",
            ConfigKind::DeliveryProfile => "delivery_profile",
            ConfigKind::SyslogProfile => "syslog_profile",
            ConfigKind::ApiClient => "api_client",
            ConfigKind::SamlSp => "saml_sp",
        }
    }
}

/// A named configuration object as stored: its JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigDoc {
    pub kind: ConfigKind,
    pub name: String,
    pub body: Value,
    pub updated_at: i64,
}

/// What a piece of web state is. Each kind is its own namespace of keys; the stored name
/// ([`WebStateKind::as_str`]) never changes (rows outlive upgrades).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebStateKind {
    /// A sign-in on the login page under way (by the hash of its cookie's key).
    LoginFlow,
    /// An SSO session (by the hash of its cookie's key; subject: realm and user).
    SsoSession,
    /// An OpenID Connect authorization code not yet traded.
    AuthCode,
    /// A traded authorization code, while the access token it bought lives.
    SpentCode,
    /// A SAML request ID seen (replay protection).
    SamlRequestSeen,
    /// A SAML front-channel logout under way.
    SamlLogout,
    /// A payload-encryption nonce seen (replay protection).
    PayloadNonce,
    /// A refresh token presented again: the client's grants for the user are revoked.
    RefreshReuse,
    /// An SSO session ended away from a running server whose OpenID Connect clients are still
    /// to be told (back-channel logout).
    BackchannelDue,
}

impl WebStateKind {
    pub const ALL: [WebStateKind; 9] = [
        WebStateKind::LoginFlow,
        WebStateKind::SsoSession,
        WebStateKind::AuthCode,
        WebStateKind::SpentCode,
        WebStateKind::SamlRequestSeen,
        WebStateKind::SamlLogout,
        WebStateKind::PayloadNonce,
        WebStateKind::RefreshReuse,
        WebStateKind::BackchannelDue,
    ];

    /// The name it is stored under.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebStateKind::LoginFlow => "login",
            WebStateKind::SsoSession => "sso",
            WebStateKind::AuthCode => "code",
            WebStateKind::SpentCode => "code_spent",
            WebStateKind::SamlRequestSeen => "saml_seen",
            WebStateKind::SamlLogout => "saml_logout",
            WebStateKind::PayloadNonce => "payload-nonce",
            WebStateKind::RefreshReuse => "refresh_reuse",
            WebStateKind::BackchannelDue => "backchannel_due",
        }
    }

    /// The kind stored under `name`.
    pub fn parse(name: &str) -> Option<WebStateKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for WebStateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Short-lived state of web sign-in, kept by the hash of the random key the browser or
/// client holds: login flows, SSO sessions, authorization codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebState {
    pub kind: WebStateKind,
    pub key_hash: String,
    /// Whose it is (`realm` + U+001F + login name for SSO sessions), for listing; may be empty.
    pub subject: String,
    /// JSON.
    pub data: String,
    pub expires_at: i64,
}

pub use crate::lockout::{FailKind, LockKey, LockPolicy, LockState, Reservation};

#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    pub source: Option<SourceName>,
    /// Substring of the username, email or name (case-insensitive).
    pub search: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

#[derive(Clone, Debug, Default)]
pub struct TokenFilter {
    pub owner: Option<UserRef>,
    pub kind: Option<TokenKind>,
    pub limit: u32,
    pub offset: u32,
}

/// Bootstrap values (flags, the key check, salts) and the store's health and upkeep.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Counts the deciding writes (see the module documentation) that were answered and then
    /// not committed. A change between before a caller's deciding writes and after its committed
    /// write means some of them may be lost: the caller must fail instead of answering.
    fn lost_writes(&self) -> u64;
    /// Returns once every write answered so far is committed (and so seen by reads): for a
    /// caller that reads back what its deciding writes changed.
    async fn flush(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn meta(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;
    /// Sets `key` to `value` unless it has a value; returns the value it has afterwards (so
    /// that nodes racing to create something all end up with the same).
    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String>;
    /// Deletes expired transactions and sessions; returns how many rows went.
    async fn purge_expired(&self, now: i64) -> StoreResult<u64>;
}

/// Settings and named configuration documents, and the sealing of their secrets.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Bumped by every change to settings or configuration documents, on any node.
    async fn config_version(&self) -> StoreResult<i64>;
    async fn settings(&self) -> StoreResult<Map<String, Value>>;
    /// Upserts the given keys (the others stay) and bumps the config version.
    async fn put_settings(&self, values: &Map<String, Value>, now: i64) -> StoreResult<()>;
    async fn config_docs(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>>;
    async fn put_config_doc(
        &self,
        kind: ConfigKind,
        name: &str,
        body: &Value,
        now: i64,
    ) -> StoreResult<()>;
    async fn delete_config_doc(&self, kind: ConfigKind, name: &str) -> StoreResult<bool>;
    /// Seals a secret of a configuration document (a RADIUS shared secret, a bind password)
    /// under the master key; `context` binds it to its place (it opens nowhere else).
    fn seal_secret(&self, plaintext: &[u8], context: &str) -> Vec<u8>;
    fn open_secret(&self, sealed: &[u8], context: &str) -> StoreResult<Zeroizing<Vec<u8>>>;
}

/// Users kept by Tessera itself, and the MFA passwords of users of any source (seed 003).
#[async_trait]
pub trait UserStore: Send + Sync {
    /// The Argon2id hash of a user's MFA password.
    async fn mfa_password(&self, user: &UserRef) -> StoreResult<Option<String>>;
    /// Sets (or replaces) a user's MFA password hash. Deciding.
    async fn set_mfa_password(&self, user: &UserRef, hash: &str, now: i64) -> StoreResult<()>;
    /// Removes a user's MFA password (the user sets a new one at the next login); false when
    /// there was none.
    async fn delete_mfa_password(&self, user: &UserRef) -> StoreResult<bool>;
    async fn create_local_user(&self, user: &NewLocalUser, now: i64) -> StoreResult<()>;
    /// Login names compare case-insensitively.
    async fn local_user_by_name(
        &self,
        source: &SourceName,
        username: &str,
    ) -> StoreResult<Option<LocalUser>>;
    async fn local_user_by_id(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<Option<LocalUser>>;
    async fn list_local_users(&self, filter: &UserFilter) -> StoreResult<Vec<LocalUser>>;
    async fn count_local_users(&self, source: Option<&SourceName>) -> StoreResult<u64>;
    async fn update_local_user(
        &self,
        source: &SourceName,
        id: &UserId,
        patch: &UserPatch,
        now: i64,
    ) -> StoreResult<bool>;
    async fn delete_local_user(&self, source: &SourceName, id: &UserId) -> StoreResult<bool>;
}

/// Authenticators and their single-use budgets (fail counter, last accepted step).
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: &NewToken) -> StoreResult<()>;
    async fn token(&self, serial: &Serial) -> StoreResult<Option<Token>>;
    async fn tokens_of(&self, owner: &UserRef) -> StoreResult<Vec<Token>>;
    async fn list_tokens(&self, filter: &TokenFilter) -> StoreResult<Vec<Token>>;
    async fn count_tokens(&self) -> StoreResult<u64>;
    /// Applies the patch; false when there is no such token, or the patch's counter is behind
    /// the token's (one conditional statement: an OTP once accepted stays spent).
    async fn update_token(&self, serial: &Serial, patch: &TokenPatch) -> StoreResult<bool>;
    async fn delete_token(&self, serial: &Serial) -> StoreResult<bool>;
    async fn delete_tokens_of(&self, owner: &UserRef) -> StoreResult<u64>;
    /// Gives a token that has no owner to `owner` (one conditional statement: of two
    /// assignments at once, one wins); false when there is no such token or it has an owner.
    async fn assign_token(&self, serial: &Serial, owner: &UserRef) -> StoreResult<bool>;
    /// Replaces the token's PIN hash `old` with `new` (a re-hash after a successful check), only
    /// while it is still `old`: a PIN changed meanwhile stays.
    async fn replace_pin_hash(&self, serial: &Serial, old: &str, new: &str) -> StoreResult<bool>;
    /// Takes one attempt from the token's fail budget before an OTP is checked against it: one
    /// conditional statement that counts the attempt (fail counter and, with `count_auth`, the
    /// authentication counter) unless the token is at its fail limit (`max_fail`). A token at
    /// its limit for `clear_minutes` (when not 0) starts a new count. The attempt that reaches the
    /// limit stamps the time. False: the token is locked (or not enabled). Deciding.
    async fn reserve_token_attempt(
        &self,
        serial: &Serial,
        now: i64,
        clear_minutes: u32,
        count_auth: bool,
    ) -> StoreResult<bool>;
    /// Gives back an attempt reserved on a token that the login did not need after all (another
    /// token matched). Deciding.
    async fn release_token_attempt(&self, serial: &Serial, count_auth: bool) -> StoreResult<()>;
    /// Accepts the OTP found at `counter` with an attempt the caller reserved, if, and only if,
    /// no OTP at or after `counter` was accepted before: the token's counter becomes
    /// `counter + 1`, its fail counter and any pending resync are cleared and (unless
    /// `count_auth` is false) its success counter is bumped. Returns false when the OTP was
    /// already used, by this or by a concurrent request. Deciding (see the module
    /// documentation).
    async fn accept_otp(
        &self,
        serial: &Serial,
        counter: i64,
        now: i64,
        count_auth: bool,
    ) -> StoreResult<bool>;
    /// Increases the fail counters (up to each token's maximum, stamping the time it was
    /// reached; a count whose limit was reached `clear_minutes` ago starts afresh) and the
    /// authentication counters, without a check (a wrong PIN with
    /// `increase_failcounter_on_wrong_pin`). Deciding.
    async fn record_otp_failures(
        &self,
        serials: &[Serial],
        now: i64,
        count_auth: bool,
        clear_minutes: u32,
    ) -> StoreResult<()>;
    /// Remembers (or forgets, with `None`) the first OTP of an automatic resync. Deciding.
    async fn set_resync_state(
        &self,
        serial: &Serial,
        counter: Option<i64>,
        at: Option<i64>,
    ) -> StoreResult<()>;
}

/// Transactions of logins in progress: challenges, sent codes, links.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Creates a transaction and, with `message`, queues the message that carries its code in
    /// the same database transaction: both or neither.
    async fn create_transaction(
        &self,
        tx: &Transaction,
        message: Option<&OutboxMessage>,
    ) -> StoreResult<()>;
    async fn transaction(&self, id: &TransactionId) -> StoreResult<Option<Transaction>>;
    /// Moves a pending transaction from factor `from` to factor `to` with the given challenged
    /// serials, or marks it completed. False when another request moved it first.
    async fn advance_transaction(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        complete: bool,
    ) -> StoreResult<bool>;
    /// `advance_transaction` to factor `to` whose answer is a code sent by `message`: the code
    /// and the queued message are stored with the move, all or nothing.
    async fn advance_with_code(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        code: &SentCode,
        message: &OutboxMessage,
    ) -> StoreResult<bool>;
    /// Takes one of the `max` answers a sent code of factor `factor` allows (while it is
    /// unexpired at `now` and the transaction waits for that factor): its hash, or `None` when
    /// there is no such code or its answers are used up. Every answer takes one, so parallel
    /// guesses cannot exceed `max`.
    async fn reserve_code_attempt(
        &self,
        id: &TransactionId,
        factor: u32,
        max: u32,
        now: i64,
    ) -> StoreResult<Option<String>>;
    /// Spends a code that was answered right; false when another request spent it first.
    async fn consume_code(&self, id: &TransactionId, hash: &str) -> StoreResult<bool>;
    /// Answers the link of the pending factor (`Answered` or `Declined`) if `hash` is its
    /// token's hash and it is unexpired at `now`: one statement, once.
    async fn answer_link(
        &self,
        id: &TransactionId,
        hash: &str,
        status: TxStatus,
        now: i64,
    ) -> StoreResult<bool>;
    async fn set_transaction_status(
        &self,
        id: &TransactionId,
        status: TxStatus,
    ) -> StoreResult<bool>;
}

/// Messages queued for delivery (codes, links), claimed by one sender at a time.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Queues a message that belongs to no transaction (a notice).
    async fn queue_message(&self, message: &OutboxMessage) -> StoreResult<()>;
    /// Claims up to `limit` messages due at `now` (pending, or sending with an expired lease:
    /// the node that took them died) for one attempt each until `lease_until`. A message is
    /// claimed by one caller at a time, across nodes; the attempt is (id, attempts).
    async fn claim_outbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Records how attempt `attempt` of a message ended; false when that attempt no longer
    /// holds it (its lease ran out and another took it).
    async fn finish_outbox(
        &self,
        id: &str,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> StoreResult<bool>;
    /// Messages, newest first: pending and failed ones, or all.
    async fn list_outbox(&self, all: bool, limit: u32) -> StoreResult<Vec<OutboxMessage>>;
}

/// Account and address lockout budgets (see [`crate::lockout`]).
#[async_trait]
pub trait LockStore: Send + Sync {
    async fn lock_state(&self, key: &LockKey) -> StoreResult<Option<LockState>>;
    /// Takes one attempt of `kind` from the budget of `key`, before the attempt is checked: one
    /// conditional write that counts it unless the key is locked at `now` (a count older than
    /// `interval_secs`, or whose lock ran out, starts afresh). The attempt that uses up a budget
    /// locks the key for `lock_secs` at once, so that no attempt sent beside it gets checked;
    /// if it was right, giving it back unlocks. `None`: refused. Deciding.
    async fn reserve_attempt(
        &self,
        key: &LockKey,
        kind: FailKind,
        now: i64,
        policy: &LockPolicy,
    ) -> StoreResult<Option<LockState>>;
    /// Gives back an attempt that was right (or not the user's mistake): the count goes down by
    /// one, and the lock goes if the count is below the budget again. Nothing happens when the
    /// count started afresh since the attempt was taken. Deciding.
    async fn release_attempt(&self, reservation: &Reservation) -> StoreResult<()>;
    /// Forgets the counts of `keys` (a login passed; an administrator unlocked). Deciding.
    async fn clear_locks(&self, keys: &[LockKey]) -> StoreResult<()>;
    /// Forgets the counts of every key whose stored form starts with `prefix` (an account's
    /// per-address counts); how many there were.
    async fn clear_locks_with_prefix(&self, prefix: &str) -> StoreResult<u64>;
    /// The counts of every key whose stored form starts with `prefix`, by stored key (at most
    /// `limit`).
    async fn locks_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, LockState)>>;
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;
}

/// Administrator accounts and their sessions.
#[async_trait]
pub trait AdminStore: Send + Sync {
    async fn create_admin(&self, admin: &AdminAccount) -> StoreResult<()>;
    async fn admin(&self, name: &str) -> StoreResult<Option<AdminAccount>>;
    async fn list_admins(&self) -> StoreResult<Vec<AdminAccount>>;
    async fn update_admin_password(&self, name: &str, password_hash: &str) -> StoreResult<bool>;
    async fn delete_admin(&self, name: &str) -> StoreResult<bool>;
    async fn create_session(&self, session: &AdminSession) -> StoreResult<()>;
    async fn session(&self, token_hash: &str) -> StoreResult<Option<AdminSession>>;
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()>;
    async fn delete_sessions_of(&self, admin: &str) -> StoreResult<()>;
}

/// Web sign-in state (login flows, SSO sessions, authorization codes) and OAuth grants (revoked access tokens, refresh tokens).
#[async_trait]
pub trait WebStateStore: Send + Sync {
    /// Remembers that the token `jti` is revoked until it expires anyway.
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()>;
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool>;
    /// Keeps a refresh token (by its hash).
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    /// Spends a refresh token of `client_id`, once, if unexpired at `now`: what it was for.
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>>;
    /// A refresh token of `client_id` that was spent and has not expired: what it was for.
    /// Presented again, it was copied (RFC 9700 §4.14.2: refresh token rotation).
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>>;
    /// Spends every refresh token a client holds for a user that is live at `now`; how many.
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64>;
    /// Keeps `data` under (`kind`, `key_hash`) until `expires_at`, replacing what was there.
    async fn put_web_state(&self, state: &WebState) -> StoreResult<()>;
    /// Keeps `state` unless an unexpired state is under its (`kind`, `key_hash`): true when it
    /// was kept (first seen), false when one was there. Deciding: of two at once, one wins.
    async fn claim_web_state(&self, state: &WebState, now: i64) -> StoreResult<bool>;
    /// The unexpired state under (`kind`, `key_hash`).
    async fn web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>>;
    /// Removes and returns the unexpired state, once (single-use codes). Deciding.
    async fn take_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>>;
    /// The unexpired states of `kind` for `subject` (a user's SSO sessions).
    async fn web_states_of(
        &self,
        kind: WebStateKind,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<WebState>>;
    /// Replaces the data of the unexpired state under (`kind`, `key_hash`) if it is still
    /// `was` (its subject and end stay): false when it changed meanwhile or is gone. Two
    /// read-modify-writes at once cannot both win (the loser reads again).
    async fn update_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        was: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Removes the state; false when there was none.
    async fn delete_web_state(&self, kind: WebStateKind, key_hash: &str) -> StoreResult<bool>;
}

/// Everything Tessera keeps, as one handle: the union of the role traits above, which a
/// backend implements one by one. Services that need one part take that role.
pub trait Store:
    MetaStore
    + ConfigStore
    + UserStore
    + TokenStore
    + FlowStore
    + OutboxStore
    + LockStore
    + AuditStore
    + AdminStore
    + WebStateStore
    + std::fmt::Debug
{
}

impl<T> Store for T where
    T: MetaStore
        + ConfigStore
        + UserStore
        + TokenStore
        + FlowStore
        + OutboxStore
        + LockStore
        + AuditStore
        + AdminStore
        + WebStateStore
        + std::fmt::Debug
{
}
