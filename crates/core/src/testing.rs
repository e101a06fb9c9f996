//! An in-memory [`Store`](crate::store::Store), for tests of the engine, the services and the
//! doors without a database: every role trait, with the semantics of the SQL store — the same
//! conditional writes, each under one lock so that racing callers see one winner. The store
//! contract (`crates/store/tests/contract`) runs on it too, beside SQLite and PostgreSQL.
//!
//! Secrets are not encrypted here: a "sealed" value is its context and the plaintext, so that
//! opening it elsewhere fails as it does in the real store. Not for production use.

use crate::ids::{Serial, SourceName, TransactionId, UserId, UserRef};
use crate::model::{
    AdminAccount, AdminSession, AttemptResult, AuditQuery, AuditRecord, LocalUser, NewLocalUser,
    NewToken, OutboxMessage, OutboxStatus, SentCode, Token, TokenPatch, TokenState, Transaction,
    TxStatus, UserPatch,
};
use crate::store::{
    AdminStore, AuditStore, ConfigDoc, ConfigKind, ConfigStore, FailKind, FlowStore, LockKey,
    LockPolicy, LockState, LockStore, MetaStore, OutboxStore, RefreshToken, Reservation,
    StoreError, StoreResult, TokenFilter, TokenStore, UserFilter, UserStore, WebState,
    WebStateKind, WebStateStore,
};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Everything Tessera keeps, in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    meta: HashMap<String, String>,
    config_version: i64,
    settings: Map<String, Value>,
    /// By kind and lower-case name.
    docs: BTreeMap<(ConfigKind, String), ConfigDoc>,
    /// By source and id.
    users: BTreeMap<(String, String), LocalUser>,
    mfa_passwords: HashMap<(String, String), String>,
    tokens: BTreeMap<String, Token>,
    transactions: HashMap<String, Transaction>,
    /// Messages with their lease.
    outbox: Vec<(OutboxMessage, Option<i64>)>,
    locks: BTreeMap<String, LockState>,
    audit: Vec<AuditRecord>,
    admins: BTreeMap<String, AdminAccount>,
    sessions: HashMap<String, AdminSession>,
    states: HashMap<(WebStateKind, String), WebState>,
    /// Revoked access tokens and when they expire anyway.
    revoked: HashMap<String, i64>,
    /// Refresh tokens by hash, with whether each was spent.
    refresh: HashMap<String, (RefreshToken, bool)>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The audit records appended so far, oldest first.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.with(|i| i.audit.clone())
    }

    /// How many web states of `kind` are kept (live or not).
    pub fn count(&self, kind: WebStateKind) -> usize {
        self.with(|i| i.states.keys().filter(|(k, _)| *k == kind).count())
    }
}

fn user_key(source: &SourceName, id: &UserId) -> (String, String) {
    (source.0.clone(), id.0.clone())
}

fn owner_key(owner: &UserRef) -> (String, String) {
    user_key(&owner.source, &owner.id)
}

/// A token at its fail limit whose limit was reached `clear_minutes` (when not 0) or more
/// minutes before `now`: its count starts afresh at the next attempt.
fn cleared(t: &Token, now: i64, clear_minutes: u32) -> bool {
    t.fail_count >= t.max_fail
        && clear_minutes > 0
        && t.fail_exceeded_at
            .is_some_and(|at| at + i64::from(clear_minutes) * 60 <= now)
}

/// Counts one failure on `t` (fail counter and stamp, as one statement on the old values).
fn count_failure(t: &mut Token, now: i64, clear_minutes: u32, capped: bool) {
    let fresh = cleared(t, now, clear_minutes);
    let exceeded_at = if fresh {
        (t.max_fail <= 1).then_some(now)
    } else if t.fail_count + 1 >= t.max_fail && t.fail_exceeded_at.is_none() {
        Some(now)
    } else {
        t.fail_exceeded_at
    };
    t.fail_count = if fresh {
        1
    } else if !capped || t.fail_count < t.max_fail {
        t.fail_count + 1
    } else {
        t.fail_count
    };
    t.fail_exceeded_at = exceeded_at;
}

#[async_trait]
impl MetaStore for MemStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn lost_writes(&self) -> u64 {
        0
    }
    async fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self.with(|i| i.meta.get(key).cloned()))
    }
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.with(|i| i.meta.insert(key.into(), value.into()));
        Ok(())
    }
    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String> {
        Ok(self.with(|i| {
            i.meta
                .entry(key.to_string())
                .or_insert_with(|| value.to_string())
                .clone()
        }))
    }
    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        Ok(self.with(|i| {
            let mut n = 0;
            let mut gone = |before: usize, after: usize| n += (before - after) as u64;
            let b = i.transactions.len();
            i.transactions.retain(|_, t| t.expires_at >= now - 3600);
            gone(b, i.transactions.len());
            let b = i.sessions.len();
            i.sessions.retain(|_, s| s.expires_at >= now);
            gone(b, i.sessions.len());
            let b = i.refresh.len();
            i.refresh.retain(|_, (t, _)| t.expires_at >= now);
            gone(b, i.refresh.len());
            let b = i.revoked.len();
            i.revoked.retain(|_, exp| *exp >= now);
            gone(b, i.revoked.len());
            let b = i.states.len();
            i.states.retain(|_, s| s.expires_at >= now);
            gone(b, i.states.len());
            let b = i.outbox.len();
            i.outbox.retain(|(m, _)| {
                !(matches!(m.status, OutboxStatus::Sent | OutboxStatus::Failed)
                    && m.updated_at < now - 7 * 86_400)
            });
            gone(b, i.outbox.len());
            let b = i.locks.len();
            i.locks.retain(|k, l| {
                let session_gone =
                    k.starts_with(LockKey::SESSION_PREFIX) && l.first_fail_at < now - 2 * 86_400;
                let stale =
                    l.first_fail_at < now - 31 * 86_400 && l.locked_until.is_none_or(|u| u < now);
                !(session_gone || stale)
            });
            gone(b, i.locks.len());
            n
        }))
    }
}

#[async_trait]
impl ConfigStore for MemStore {
    async fn config_version(&self) -> StoreResult<i64> {
        Ok(self.with(|i| i.config_version))
    }
    async fn settings(&self) -> StoreResult<Map<String, Value>> {
        Ok(self.with(|i| i.settings.clone()))
    }
    async fn put_settings(&self, values: &Map<String, Value>, _now: i64) -> StoreResult<()> {
        self.with(|i| {
            for (k, v) in values {
                i.settings.insert(k.clone(), v.clone());
            }
            i.config_version += 1;
        });
        Ok(())
    }
    async fn config_docs(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>> {
        Ok(self.with(|i| {
            i.docs
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|(_, d)| d.clone())
                .collect()
        }))
    }
    async fn put_config_doc(
        &self,
        kind: ConfigKind,
        name: &str,
        body: &Value,
        now: i64,
    ) -> StoreResult<()> {
        self.with(|i| {
            i.docs.insert(
                (kind, name.to_lowercase()),
                ConfigDoc {
                    kind,
                    name: name.to_string(),
                    body: body.clone(),
                    updated_at: now,
                },
            );
            i.config_version += 1;
        });
        Ok(())
    }
    async fn delete_config_doc(&self, kind: ConfigKind, name: &str) -> StoreResult<bool> {
        Ok(self.with(|i| {
            i.config_version += 1;
            i.docs.remove(&(kind, name.to_lowercase())).is_some()
        }))
    }
    fn seal_secret(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(context.len() + 1 + plaintext.len());
        sealed.extend_from_slice(context.as_bytes());
        sealed.push(0);
        sealed.extend_from_slice(plaintext);
        sealed
    }
    fn open_secret(&self, sealed: &[u8], context: &str) -> StoreResult<Zeroizing<Vec<u8>>> {
        match sealed.strip_prefix(context.as_bytes()) {
            Some([0, rest @ ..]) => Ok(Zeroizing::new(rest.to_vec())),
            _ => Err(StoreError::Unseal(format!("{context}: sealed elsewhere"))),
        }
    }
}

#[async_trait]
impl UserStore for MemStore {
    async fn mfa_password(&self, user: &UserRef) -> StoreResult<Option<String>> {
        Ok(self.with(|i| i.mfa_passwords.get(&owner_key(user)).cloned()))
    }
    async fn set_mfa_password(&self, user: &UserRef, hash: &str, _now: i64) -> StoreResult<()> {
        self.with(|i| i.mfa_passwords.insert(owner_key(user), hash.to_string()));
        Ok(())
    }
    async fn delete_mfa_password(&self, user: &UserRef) -> StoreResult<bool> {
        Ok(self.with(|i| i.mfa_passwords.remove(&owner_key(user)).is_some()))
    }
    async fn create_local_user(&self, new: &NewLocalUser, now: i64) -> StoreResult<()> {
        let u = &new.user;
        self.with(|i| {
            let key = user_key(&u.source, &u.id);
            let lc = u.username.to_lowercase();
            if i.users.contains_key(&key)
                || i.users
                    .values()
                    .any(|x| x.user.source == u.source && x.user.username.to_lowercase() == lc)
            {
                return Err(StoreError::Conflict(format!("user '{}'", u.username)));
            }
            let mut user = u.clone();
            user.attributes = Default::default();
            i.users.insert(
                key,
                LocalUser {
                    user,
                    password_hash: new.password_hash.clone(),
                    created_at: now,
                    updated_at: now,
                },
            );
            Ok(())
        })
    }
    async fn local_user_by_name(
        &self,
        source: &SourceName,
        username: &str,
    ) -> StoreResult<Option<LocalUser>> {
        let lc = username.to_lowercase();
        Ok(self.with(|i| {
            i.users
                .values()
                .find(|x| x.user.source == *source && x.user.username.to_lowercase() == lc)
                .cloned()
        }))
    }
    async fn local_user_by_id(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<Option<LocalUser>> {
        Ok(self.with(|i| i.users.get(&user_key(source, id)).cloned()))
    }
    async fn list_local_users(&self, filter: &UserFilter) -> StoreResult<Vec<LocalUser>> {
        let needle = filter
            .search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as usize;
        let mut found: Vec<LocalUser> = self.with(|i| {
            i.users
                .values()
                .filter(|x| filter.source.as_ref().is_none_or(|s| x.user.source == *s))
                .filter(|x| {
                    needle.as_ref().is_none_or(|n| {
                        let u = &x.user;
                        let name = format!(
                            "{} {}",
                            u.given_name.as_deref().unwrap_or(""),
                            u.surname.as_deref().unwrap_or("")
                        );
                        u.username.to_lowercase().contains(n)
                            || u.email.as_deref().unwrap_or("").to_lowercase().contains(n)
                            || name.to_lowercase().contains(n)
                    })
                })
                .cloned()
                .collect()
        });
        found.sort_by(|a, b| {
            (&a.user.source.0, a.user.username.to_lowercase())
                .cmp(&(&b.user.source.0, b.user.username.to_lowercase()))
        });
        Ok(found
            .into_iter()
            .skip(filter.offset as usize)
            .take(limit)
            .collect())
    }
    async fn count_local_users(&self, source: Option<&SourceName>) -> StoreResult<u64> {
        Ok(self.with(|i| {
            i.users
                .values()
                .filter(|x| source.is_none_or(|s| x.user.source == *s))
                .count() as u64
        }))
    }
    async fn update_local_user(
        &self,
        source: &SourceName,
        id: &UserId,
        p: &UserPatch,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let Some(x) = i.users.get_mut(&user_key(source, id)) else {
                return false;
            };
            let u = &mut x.user;
            let set = |field: &mut Option<String>, v: &Option<Option<String>>| {
                if let Some(v) = v {
                    *field = v.clone();
                }
            };
            set(&mut u.given_name, &p.given_name);
            set(&mut u.surname, &p.surname);
            set(&mut u.email, &p.email);
            set(&mut u.phone, &p.phone);
            set(&mut u.manager, &p.manager);
            if let Some(g) = &p.groups {
                u.groups = g.clone();
            }
            if let Some(e) = p.enabled {
                u.enabled = e;
            }
            if let Some(e) = p.expires_at {
                u.expires_at = e;
            }
            if let Some(h) = &p.password_hash {
                x.password_hash = h.clone();
            }
            x.updated_at = now;
            true
        }))
    }
    async fn delete_local_user(&self, source: &SourceName, id: &UserId) -> StoreResult<bool> {
        Ok(self.with(|i| i.users.remove(&user_key(source, id)).is_some()))
    }
}

#[async_trait]
impl TokenStore for MemStore {
    async fn insert_token(&self, t: &NewToken) -> StoreResult<()> {
        self.with(|i| {
            if i.tokens.contains_key(&t.serial.0) {
                return Err(StoreError::Conflict(format!("token {}", t.serial)));
            }
            i.tokens.insert(
                t.serial.0.clone(),
                Token {
                    serial: t.serial.clone(),
                    kind: t.kind,
                    owner: t.owner.clone(),
                    description: t.description.clone(),
                    seed: t.seed.clone(),
                    algorithm: t.algorithm,
                    digits: t.digits,
                    period: t.period,
                    counter: t.counter,
                    window: t.window,
                    sync_window: t.sync_window,
                    pin_hash: t.pin_hash.clone(),
                    fail_count: t.fail_count,
                    max_fail: t.max_fail,
                    fail_exceeded_at: None,
                    state: t.state,
                    resync_counter: None,
                    resync_at: None,
                    count_auth: 0,
                    count_auth_success: 0,
                    last_auth: None,
                    created_at: t.created_at,
                },
            );
            Ok(())
        })
    }
    async fn token(&self, serial: &Serial) -> StoreResult<Option<Token>> {
        Ok(self.with(|i| i.tokens.get(&serial.0).cloned()))
    }
    async fn tokens_of(&self, owner: &UserRef) -> StoreResult<Vec<Token>> {
        Ok(self.with(|i| {
            i.tokens
                .values()
                .filter(|t| t.owner.as_ref() == Some(owner))
                .cloned()
                .collect()
        }))
    }
    async fn list_tokens(&self, f: &TokenFilter) -> StoreResult<Vec<Token>> {
        let limit = if f.limit == 0 { 100 } else { f.limit } as usize;
        Ok(self.with(|i| {
            i.tokens
                .values()
                .filter(|t| f.owner.as_ref().is_none_or(|o| t.owner.as_ref() == Some(o)))
                .filter(|t| f.kind.is_none_or(|k| t.kind == k))
                .skip(f.offset as usize)
                .take(limit)
                .cloned()
                .collect()
        }))
    }
    async fn count_tokens(&self) -> StoreResult<u64> {
        Ok(self.with(|i| i.tokens.len() as u64))
    }
    async fn update_token(&self, serial: &Serial, p: &TokenPatch) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let Some(t) = i.tokens.get_mut(&serial.0) else {
                return false;
            };
            if p.counter.is_some_and(|c| t.counter > c) {
                return false;
            }
            if let Some(d) = &p.description {
                t.description = d.clone();
            }
            if let Some(s) = p.state {
                t.state = s;
            }
            if let Some(h) = &p.pin_hash {
                t.pin_hash = h.clone();
            }
            if let Some(m) = p.max_fail {
                t.max_fail = m;
            }
            if let Some(w) = p.window {
                t.window = w;
            }
            if let Some(w) = p.sync_window {
                t.sync_window = w;
            }
            if p.reset_failcount {
                t.fail_count = 0;
                t.fail_exceeded_at = None;
            }
            if let Some(c) = p.counter {
                t.counter = c;
                t.resync_counter = None;
                t.resync_at = None;
            }
            true
        }))
    }
    async fn delete_token(&self, serial: &Serial) -> StoreResult<bool> {
        Ok(self.with(|i| i.tokens.remove(&serial.0).is_some()))
    }
    async fn delete_tokens_of(&self, owner: &UserRef) -> StoreResult<u64> {
        Ok(self.with(|i| {
            let before = i.tokens.len();
            i.tokens.retain(|_, t| t.owner.as_ref() != Some(owner));
            (before - i.tokens.len()) as u64
        }))
    }
    async fn assign_token(&self, serial: &Serial, owner: &UserRef) -> StoreResult<bool> {
        Ok(self.with(|i| match i.tokens.get_mut(&serial.0) {
            Some(t) if t.owner.is_none() => {
                t.owner = Some(owner.clone());
                true
            }
            _ => false,
        }))
    }
    async fn replace_pin_hash(&self, serial: &Serial, old: &str, new: &str) -> StoreResult<bool> {
        Ok(self.with(|i| match i.tokens.get_mut(&serial.0) {
            Some(t) if t.pin_hash.as_deref() == Some(old) => {
                t.pin_hash = Some(new.to_string());
                true
            }
            _ => false,
        }))
    }
    async fn reserve_token_attempt(
        &self,
        serial: &Serial,
        now: i64,
        clear_minutes: u32,
        count_auth: bool,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let Some(t) = i.tokens.get_mut(&serial.0) else {
                return false;
            };
            if t.state != TokenState::Enabled
                || !(t.fail_count < t.max_fail || cleared(t, now, clear_minutes))
            {
                return false;
            }
            count_failure(t, now, clear_minutes, false);
            t.count_auth += i64::from(count_auth);
            true
        }))
    }
    async fn release_token_attempt(&self, serial: &Serial, count_auth: bool) -> StoreResult<()> {
        self.with(|i| {
            if let Some(t) = i.tokens.get_mut(&serial.0) {
                let old = t.fail_count;
                t.fail_count = old.saturating_sub(1);
                if i64::from(old) - 1 < i64::from(t.max_fail) {
                    t.fail_exceeded_at = None;
                }
                t.count_auth = (t.count_auth - i64::from(count_auth)).max(0);
            }
        });
        Ok(())
    }
    async fn accept_otp(
        &self,
        serial: &Serial,
        counter: i64,
        now: i64,
        count_auth: bool,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| match i.tokens.get_mut(&serial.0) {
            Some(t)
                if t.counter <= counter
                    && t.state == TokenState::Enabled
                    && t.fail_count <= t.max_fail =>
            {
                t.counter = counter + 1;
                t.fail_count = 0;
                t.fail_exceeded_at = None;
                t.resync_counter = None;
                t.resync_at = None;
                t.count_auth_success += i64::from(count_auth);
                t.last_auth = Some(now);
                true
            }
            _ => false,
        }))
    }
    async fn record_otp_failures(
        &self,
        serials: &[Serial],
        now: i64,
        count_auth: bool,
        clear_minutes: u32,
    ) -> StoreResult<()> {
        self.with(|i| {
            for serial in serials {
                if let Some(t) = i.tokens.get_mut(&serial.0) {
                    count_failure(t, now, clear_minutes, true);
                    t.count_auth += i64::from(count_auth);
                }
            }
        });
        Ok(())
    }
    async fn set_resync_state(
        &self,
        serial: &Serial,
        counter: Option<i64>,
        at: Option<i64>,
    ) -> StoreResult<()> {
        self.with(|i| {
            if let Some(t) = i.tokens.get_mut(&serial.0) {
                t.resync_counter = counter;
                t.resync_at = at;
            }
        });
        Ok(())
    }
}

fn waits(t: &Transaction) -> bool {
    matches!(t.status, TxStatus::Pending | TxStatus::Answered)
}

#[async_trait]
impl FlowStore for MemStore {
    async fn create_transaction(
        &self,
        tx: &Transaction,
        message: Option<&OutboxMessage>,
    ) -> StoreResult<()> {
        self.with(|i| {
            if i.transactions.contains_key(tx.id.as_str())
                || message.is_some_and(|m| i.outbox.iter().any(|(x, _)| x.id == m.id))
            {
                return Err(StoreError::Conflict("transaction".into()));
            }
            i.transactions
                .insert(tx.id.as_str().to_string(), tx.clone());
            if let Some(m) = message {
                i.outbox.push((m.clone(), None));
            }
            Ok(())
        })
    }
    async fn transaction(&self, id: &TransactionId) -> StoreResult<Option<Transaction>> {
        Ok(self.with(|i| i.transactions.get(id.as_str()).cloned()))
    }
    async fn advance_transaction(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        complete: bool,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| match i.transactions.get_mut(id.as_str()) {
            Some(t) if t.next_factor == from && waits(t) => {
                t.next_factor = to;
                t.serials = serials.to_vec();
                t.status = if complete {
                    TxStatus::Completed
                } else {
                    TxStatus::Pending
                };
                t.code = None;
                true
            }
            _ => false,
        }))
    }
    async fn advance_with_code(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        code: &SentCode,
        message: &OutboxMessage,
    ) -> StoreResult<bool> {
        self.with(|i| {
            let moved = match i.transactions.get_mut(id.as_str()) {
                Some(t) if t.next_factor == from && waits(t) => {
                    t.next_factor = to;
                    t.serials = serials.to_vec();
                    t.code = Some(SentCode {
                        fails: 0,
                        factor: to,
                        ..code.clone()
                    });
                    t.expires_at = t.expires_at.max(code.expires_at);
                    t.status = TxStatus::Pending;
                    true
                }
                _ => false,
            };
            // Queued only when the transaction holds this code afterwards.
            let holds = i
                .transactions
                .get(id.as_str())
                .and_then(|t| t.code.as_ref())
                .is_some_and(|c| c.hash == code.hash);
            if holds {
                if i.outbox.iter().any(|(x, _)| x.id == message.id) {
                    return Err(StoreError::Conflict("outbox message".into()));
                }
                i.outbox.push((message.clone(), None));
            }
            Ok(moved)
        })
    }
    async fn reserve_code_attempt(
        &self,
        id: &TransactionId,
        factor: u32,
        max: u32,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(self.with(|i| {
            let t = i.transactions.get_mut(id.as_str())?;
            if t.next_factor != factor || t.status != TxStatus::Pending {
                return None;
            }
            let c = t.code.as_mut()?;
            if c.kind != crate::model::CodeKind::Code
                || c.factor != factor
                || c.fails >= max
                || c.expires_at <= now
            {
                return None;
            }
            c.fails += 1;
            Some(c.hash.clone())
        }))
    }
    async fn consume_code(&self, id: &TransactionId, hash: &str) -> StoreResult<bool> {
        Ok(self.with(|i| match i.transactions.get_mut(id.as_str()) {
            Some(t) if t.code.as_ref().is_some_and(|c| c.hash == hash) => {
                t.code = None;
                true
            }
            _ => false,
        }))
    }
    async fn answer_link(
        &self,
        id: &TransactionId,
        hash: &str,
        status: TxStatus,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| match i.transactions.get_mut(id.as_str()) {
            Some(t)
                if t.status == TxStatus::Pending
                    && t.expires_at > now
                    && t.code.as_ref().is_some_and(|c| {
                        c.kind == crate::model::CodeKind::Link
                            && c.hash == hash
                            && c.factor == t.next_factor
                            && c.expires_at > now
                    }) =>
            {
                t.status = status;
                true
            }
            _ => false,
        }))
    }
    async fn set_transaction_status(
        &self,
        id: &TransactionId,
        status: TxStatus,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| match i.transactions.get_mut(id.as_str()) {
            Some(t) if t.status == TxStatus::Pending => {
                t.status = status;
                true
            }
            _ => false,
        }))
    }
}

#[async_trait]
impl OutboxStore for MemStore {
    async fn queue_message(&self, message: &OutboxMessage) -> StoreResult<()> {
        self.with(|i| {
            if i.outbox.iter().any(|(x, _)| x.id == message.id) {
                return Err(StoreError::Conflict("outbox message".into()));
            }
            i.outbox.push((message.clone(), None));
            Ok(())
        })
    }
    async fn claim_outbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        Ok(self.with(|i| {
            let mut due: Vec<usize> = (0..i.outbox.len())
                .filter(|&k| {
                    let (m, lease) = &i.outbox[k];
                    (m.status == OutboxStatus::Pending && m.next_attempt_at <= now)
                        || (m.status == OutboxStatus::Sending && lease.is_some_and(|l| l <= now))
                })
                .collect();
            due.sort_by_key(|&k| i.outbox[k].0.next_attempt_at);
            due.truncate(limit as usize);
            due.into_iter()
                .map(|k| {
                    let (m, lease) = &mut i.outbox[k];
                    m.status = OutboxStatus::Sending;
                    m.attempts += 1;
                    m.updated_at = now;
                    *lease = Some(lease_until);
                    m.clone()
                })
                .collect()
        }))
    }
    async fn finish_outbox(
        &self,
        id: &str,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let Some((m, lease)) = i.outbox.iter_mut().find(|(m, _)| m.id == id) else {
                return false;
            };
            if m.attempts != attempt || m.status != OutboxStatus::Sending {
                return false;
            }
            let (status, next, error, by) = match result {
                AttemptResult::Sent { by } => (OutboxStatus::Sent, now, None, Some(by.clone())),
                AttemptResult::Retry { at, error } => {
                    (OutboxStatus::Pending, *at, Some(error.clone()), None)
                }
                AttemptResult::Failed { error } => {
                    (OutboxStatus::Failed, now, Some(error.clone()), None)
                }
            };
            m.status = status;
            m.next_attempt_at = next;
            if error.is_some() {
                m.last_error = error;
            }
            m.sent_by = by;
            m.updated_at = now;
            *lease = None;
            true
        }))
    }
    async fn list_outbox(&self, all: bool, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
        let mut found: Vec<OutboxMessage> = self.with(|i| {
            i.outbox
                .iter()
                .map(|(m, _)| m)
                .filter(|m| all || m.status != OutboxStatus::Sent)
                .cloned()
                .collect()
        });
        found.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        found.truncate(limit.clamp(1, 10_000) as usize);
        Ok(found)
    }
}

/// The (password, OTP) counts of one attempt of `kind`.
fn counts(kind: FailKind) -> (u32, u32) {
    match kind {
        FailKind::Password => (1, 0),
        FailKind::Otp => (0, 1),
    }
}

#[async_trait]
impl LockStore for MemStore {
    async fn lock_state(&self, key: &LockKey) -> StoreResult<Option<LockState>> {
        Ok(self.with(|i| i.locks.get(&key.stored()).copied()))
    }
    async fn reserve_attempt(
        &self,
        key: &LockKey,
        kind: FailKind,
        now: i64,
        p: &LockPolicy,
    ) -> StoreResult<Option<LockState>> {
        let (pw, otp) = counts(kind);
        let locks = |pw: u32, otp: u32| pw >= p.max_password || otp >= p.max_otp;
        Ok(self.with(|i| {
            let state = match i.locks.get(&key.stored()) {
                None => LockState {
                    password_fails: pw,
                    otp_fails: otp,
                    first_fail_at: now,
                    locked_until: locks(pw, otp).then_some(now + p.lock_secs),
                },
                Some(l) => {
                    // A count starts afresh when its lock ran out, or, while it locks nothing,
                    // when it is empty or its first failure is older than the interval.
                    let fresh = match l.locked_until {
                        Some(until) => until <= now,
                        None => {
                            (l.password_fails == 0 && l.otp_fails == 0)
                                || now - l.first_fail_at >= p.interval_secs
                        }
                    };
                    if !fresh && l.locked_until.is_some() {
                        return None;
                    }
                    let (pw_after, otp_after, since) = if fresh {
                        (pw, otp, now)
                    } else {
                        (l.password_fails + pw, l.otp_fails + otp, l.first_fail_at)
                    };
                    LockState {
                        password_fails: pw_after,
                        otp_fails: otp_after,
                        first_fail_at: since,
                        locked_until: locks(pw_after, otp_after).then_some(now + p.lock_secs),
                    }
                }
            };
            i.locks.insert(key.stored(), state);
            Some(state)
        }))
    }
    async fn release_attempt(&self, r: &Reservation) -> StoreResult<()> {
        let (pw, otp) = counts(r.kind);
        self.with(|i| {
            if let Some(l) = i.locks.get_mut(&r.key.stored())
                && l.first_fail_at == r.since
            {
                let still = i64::from(l.password_fails) - i64::from(pw)
                    >= i64::from(r.policy.max_password)
                    || i64::from(l.otp_fails) - i64::from(otp) >= i64::from(r.policy.max_otp);
                l.password_fails = l.password_fails.saturating_sub(pw);
                l.otp_fails = l.otp_fails.saturating_sub(otp);
                if !still {
                    l.locked_until = None;
                }
            }
        });
        Ok(())
    }
    async fn clear_locks(&self, keys: &[LockKey]) -> StoreResult<()> {
        self.with(|i| {
            for k in keys {
                i.locks.remove(&k.stored());
            }
        });
        Ok(())
    }
    async fn clear_locks_with_prefix(&self, prefix: &str) -> StoreResult<u64> {
        Ok(self.with(|i| {
            let before = i.locks.len();
            i.locks.retain(|k, _| !k.starts_with(prefix));
            (before - i.locks.len()) as u64
        }))
    }
    async fn locks_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, LockState)>> {
        Ok(self.with(|i| {
            i.locks
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .take(limit as usize)
                .map(|(k, l)| (k.clone(), *l))
                .collect()
        }))
    }
}

/// Limits user-controlled text in audit columns (as the SQL store does).
fn clip(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|v| v.chars().take(512).collect())
}

#[async_trait]
impl AuditStore for MemStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        self.with(|i| {
            let mut r = record.clone();
            r.id = i64::try_from(i.audit.len()).unwrap_or(i64::MAX) + 1;
            r.user = clip(&r.user);
            r.realm = clip(&r.realm);
            r.serial = clip(&r.serial);
            r.application = clip(&r.application);
            r.user_agent = clip(&r.user_agent);
            r.reason = r.reason.chars().take(2000).collect();
            i.audit.push(r);
        });
        Ok(())
    }
    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let limit = q.limit.unwrap_or(100).clamp(1, 10_000) as usize;
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .filter(|w| !w.is_empty())
                .is_none_or(|w| have == Some(w))
        };
        Ok(self.with(|i| {
            i.audit
                .iter()
                .rev()
                .filter(|r| {
                    q.user.as_deref().filter(|u| !u.is_empty()).is_none_or(|u| {
                        r.user
                            .as_deref()
                            .is_some_and(|have| have.to_lowercase() == u.to_lowercase())
                    })
                })
                .filter(|r| eq(&q.serial, r.serial.as_deref()))
                .filter(|r| eq(&q.action, Some(&r.action)))
                .filter(|r| eq(&q.result, Some(&r.result)))
                .filter(|r| eq(&q.actor, Some(&r.actor)))
                .filter(|r| r.at_ms >= q.since_ms.unwrap_or(0))
                .filter(|r| r.at_ms <= q.until_ms.unwrap_or(i64::MAX))
                .filter(|r| r.id < q.before_id.unwrap_or(i64::MAX))
                .take(limit)
                .cloned()
                .collect()
        }))
    }
}

#[async_trait]
impl AdminStore for MemStore {
    async fn create_admin(&self, admin: &AdminAccount) -> StoreResult<()> {
        self.with(|i| {
            if i.admins.contains_key(&admin.name) {
                return Err(StoreError::Conflict(format!(
                    "administrator '{}'",
                    admin.name
                )));
            }
            i.admins.insert(admin.name.clone(), admin.clone());
            Ok(())
        })
    }
    async fn admin(&self, name: &str) -> StoreResult<Option<AdminAccount>> {
        Ok(self.with(|i| i.admins.get(name).cloned()))
    }
    async fn list_admins(&self) -> StoreResult<Vec<AdminAccount>> {
        Ok(self.with(|i| i.admins.values().cloned().collect()))
    }
    async fn update_admin_password(&self, name: &str, password_hash: &str) -> StoreResult<bool> {
        Ok(self.with(|i| match i.admins.get_mut(name) {
            Some(a) => {
                a.password_hash = password_hash.to_string();
                true
            }
            None => false,
        }))
    }
    async fn delete_admin(&self, name: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.admins.remove(name).is_some()))
    }
    async fn create_session(&self, session: &AdminSession) -> StoreResult<()> {
        self.with(|i| {
            if i.sessions.contains_key(&session.token_hash) {
                return Err(StoreError::Conflict("session".into()));
            }
            i.sessions
                .insert(session.token_hash.clone(), session.clone());
            Ok(())
        })
    }
    async fn session(&self, token_hash: &str) -> StoreResult<Option<AdminSession>> {
        Ok(self.with(|i| i.sessions.get(token_hash).cloned()))
    }
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.with(|i| i.sessions.remove(token_hash));
        Ok(())
    }
    async fn delete_sessions_of(&self, admin: &str) -> StoreResult<()> {
        self.with(|i| i.sessions.retain(|_, s| s.admin != admin));
        Ok(())
    }
}

#[async_trait]
impl WebStateStore for MemStore {
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.with(|i| {
            i.revoked.entry(jti.to_string()).or_insert(expires_at);
        });
        Ok(())
    }
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.revoked.contains_key(jti)))
    }
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.with(|i| {
            if i.refresh.contains_key(&token.hash) {
                return Err(StoreError::Conflict("refresh token".into()));
            }
            i.refresh.insert(token.hash.clone(), (token.clone(), false));
            Ok(())
        })
    }
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>> {
        Ok(self.with(|i| match i.refresh.get_mut(hash) {
            Some((t, used)) if !*used && t.client_id == client_id && t.expires_at > now => {
                *used = true;
                Some(t.clone())
            }
            _ => None,
        }))
    }
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>> {
        Ok(self.with(|i| match i.refresh.get(hash) {
            Some((t, true)) if t.client_id == client_id && t.expires_at > now => Some(t.clone()),
            _ => None,
        }))
    }
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64> {
        Ok(self.with(|i| {
            let mut n = 0;
            for (t, used) in i.refresh.values_mut() {
                if !*used
                    && t.client_id == client_id
                    && t.username == username
                    && t.realm == realm
                    && t.expires_at > now
                {
                    *used = true;
                    n += 1;
                }
            }
            n
        }))
    }
    async fn put_web_state(&self, state: &WebState) -> StoreResult<()> {
        self.with(|i| {
            i.states
                .insert((state.kind, state.key_hash.clone()), state.clone())
        });
        Ok(())
    }
    async fn claim_web_state(&self, state: &WebState, now: i64) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let key = (state.kind, state.key_hash.clone());
            if i.states.get(&key).is_some_and(|s| s.expires_at > now) {
                return false;
            }
            i.states.insert(key, state.clone());
            true
        }))
    }
    async fn web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        Ok(self.with(|i| {
            i.states
                .get(&(kind, key_hash.to_string()))
                .filter(|s| s.expires_at > now)
                .cloned()
        }))
    }
    async fn take_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        Ok(self.with(|i| {
            let key = (kind, key_hash.to_string());
            match i.states.get(&key) {
                Some(s) if s.expires_at > now => i.states.remove(&key),
                _ => None,
            }
        }))
    }
    async fn web_states_of(
        &self,
        kind: WebStateKind,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<WebState>> {
        let mut found: Vec<WebState> = self.with(|i| {
            i.states
                .values()
                .filter(|s| s.kind == kind && s.subject == subject && s.expires_at > now)
                .cloned()
                .collect()
        });
        found.sort_by_key(|s| s.expires_at);
        Ok(found)
    }
    async fn update_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        was: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(
            self.with(|i| match i.states.get_mut(&(kind, key_hash.to_string())) {
                Some(s) if s.expires_at > now && s.data == was => {
                    s.data = data.to_string();
                    true
                }
                _ => false,
            }),
        )
    }
    async fn delete_web_state(&self, kind: WebStateKind, key_hash: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.states.remove(&(kind, key_hash.to_string())).is_some()))
    }
}

/// An engine on a new in-memory store, at `clock`: the objects a new installation starts with
/// (the `local` source, the `default` realm and application), local users only, and the
/// cheapest password hashing the settings allow.
pub async fn engine(
    clock: crate::clock::FakeClock,
) -> Result<
    (
        std::sync::Arc<crate::engine::Engine>,
        std::sync::Arc<MemStore>,
    ),
    crate::engine::EngineError,
> {
    use crate::clock::Clock;
    use std::sync::Arc;
    let store = Arc::new(MemStore::new());
    let now = clock.now();
    let cheap: Map<String, Value> = serde_json::from_value(serde_json::json!({
        "argon2_memory_kib": 8192, "argon2_iterations": 1, "argon2_parallelism": 1,
    }))
    .unwrap_or_default();
    store.put_settings(&cheap, now).await?;
    crate::admin::bootstrap_defaults(store.as_ref(), now).await?;
    let dyn_store: Arc<dyn crate::store::Store> = store.clone();
    let clock: Arc<dyn Clock> = Arc::new(clock);
    let hasher = Arc::new(crate::hashing::Argon2Hasher::new(
        1,
        crate::hashing::HashCost::default(),
    ));
    let ports = crate::engine::Ports {
        store: dyn_store.clone(),
        hasher: hasher.clone(),
        clock: clock.clone(),
        rng: Arc::new(crate::rng::OsRng),
        sources: Arc::new(crate::source::LocalSourceFactory {
            store: dyn_store,
            hasher,
            clock,
        }),
    };
    let engine = crate::engine::Engine::new(ports).await?;
    Ok((Arc::new(engine), store))
}
