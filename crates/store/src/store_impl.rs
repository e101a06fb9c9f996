//! The store's role traits for `SqlStore`: each method delegates to the module that holds its
//! queries.

use crate::SqlStore;
use async_trait::async_trait;
use serde_json::{Map, Value};
use tessera_core::ids::{Serial, SourceName, TransactionId, UserId, UserRef};
use tessera_core::model::{
    AdminAccount, AdminSession, AttemptResult, AuditQuery, AuditRecord, LocalUser, NewLocalUser,
    NewToken, OutboxMessage, SentCode, Token, TokenPatch, Transaction, TxStatus, UserPatch,
};
use tessera_core::store::{
    AdminStore, AuditStore, ConfigDoc, ConfigKind, ConfigStore, FailKind, FlowStore, LockKey,
    LockPolicy, LockState, LockStore, MetaStore, OutboxStore, Reservation, StoreError, StoreResult,
    TokenFilter, TokenStore, UserFilter, UserStore, WebStateStore,
};
use zeroize::Zeroizing;

#[async_trait]
impl MetaStore for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.as_str()
    }
    fn lost_writes(&self) -> u64 {
        self.db.lost_writes()
    }
    async fn flush(&self) -> StoreResult<()> {
        self.db.flush().await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.db.query("SELECT 1 AS one", vec![]).await?;
        Ok(())
    }
    async fn meta(&self, key: &str) -> StoreResult<Option<String>> {
        self.meta_impl(key).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.set_meta_impl(key, value).await
    }
    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String> {
        self.init_meta_impl(key, value).await
    }
    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        self.purge_expired_impl(now).await
    }
}

#[async_trait]
impl ConfigStore for SqlStore {
    async fn config_version(&self) -> StoreResult<i64> {
        self.config_version_impl().await
    }
    async fn settings(&self) -> StoreResult<Map<String, Value>> {
        self.settings_impl().await
    }
    async fn put_settings(&self, values: &Map<String, Value>, now: i64) -> StoreResult<()> {
        self.put_settings_impl(values, now).await
    }
    async fn config_docs(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>> {
        self.config_docs_impl(kind).await
    }
    async fn put_config_doc(
        &self,
        kind: ConfigKind,
        name: &str,
        body: &Value,
        now: i64,
    ) -> StoreResult<()> {
        self.put_config_doc_impl(kind, name, body, now).await
    }
    async fn delete_config_doc(&self, kind: ConfigKind, name: &str) -> StoreResult<bool> {
        self.delete_config_doc_impl(kind, name).await
    }
    fn seal_secret(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        self.sealer.seal(plaintext, context)
    }
    fn open_secret(&self, sealed: &[u8], context: &str) -> StoreResult<Zeroizing<Vec<u8>>> {
        self.sealer
            .open(sealed, context)
            .map_err(|e| StoreError::Unseal(format!("{context}: {e}")))
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn mfa_password(&self, user: &tessera_core::ids::UserRef) -> StoreResult<Option<String>> {
        self.mfa_password_impl(user).await
    }
    async fn set_mfa_password(
        &self,
        user: &tessera_core::ids::UserRef,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.set_mfa_password_impl(user, hash, now).await
    }
    async fn delete_mfa_password(&self, user: &tessera_core::ids::UserRef) -> StoreResult<bool> {
        self.delete_mfa_password_impl(user).await
    }
    async fn create_local_user(&self, user: &NewLocalUser, now: i64) -> StoreResult<()> {
        self.create_local_user_impl(user, now).await
    }
    async fn local_user_by_name(
        &self,
        source: &SourceName,
        username: &str,
    ) -> StoreResult<Option<LocalUser>> {
        self.local_user_by_name_impl(source, username).await
    }
    async fn local_user_by_id(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<Option<LocalUser>> {
        self.local_user_by_id_impl(source, id).await
    }
    async fn list_local_users(&self, filter: &UserFilter) -> StoreResult<Vec<LocalUser>> {
        self.list_local_users_impl(filter).await
    }
    async fn count_local_users(&self, source: Option<&SourceName>) -> StoreResult<u64> {
        self.count_local_users_impl(source).await
    }
    async fn update_local_user(
        &self,
        source: &SourceName,
        id: &UserId,
        patch: &UserPatch,
        now: i64,
    ) -> StoreResult<bool> {
        self.update_local_user_impl(source, id, patch, now).await
    }
    async fn delete_local_user(&self, source: &SourceName, id: &UserId) -> StoreResult<bool> {
        self.delete_local_user_impl(source, id).await
    }
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        self.insert_token_impl(token).await
    }
    async fn token(&self, serial: &Serial) -> StoreResult<Option<Token>> {
        self.token_impl(serial).await
    }
    async fn tokens_of(&self, owner: &UserRef) -> StoreResult<Vec<Token>> {
        self.tokens_of_impl(owner).await
    }
    async fn list_tokens(&self, filter: &TokenFilter) -> StoreResult<Vec<Token>> {
        self.list_tokens_impl(filter).await
    }
    async fn count_tokens(&self) -> StoreResult<u64> {
        self.count_tokens_impl().await
    }
    async fn update_token(&self, serial: &Serial, patch: &TokenPatch) -> StoreResult<bool> {
        self.update_token_impl(serial, patch).await
    }
    async fn delete_token(&self, serial: &Serial) -> StoreResult<bool> {
        self.delete_token_impl(serial).await
    }
    async fn delete_tokens_of(&self, owner: &UserRef) -> StoreResult<u64> {
        self.delete_tokens_of_impl(owner).await
    }
    async fn assign_token(&self, serial: &Serial, owner: &UserRef) -> StoreResult<bool> {
        self.assign_token_impl(serial, owner).await
    }
    async fn replace_pin_hash(&self, serial: &Serial, old: &str, new: &str) -> StoreResult<bool> {
        self.replace_pin_hash_impl(serial, old, new).await
    }
    async fn reserve_token_attempt(
        &self,
        serial: &Serial,
        now: i64,
        clear_minutes: u32,
        count_auth: bool,
    ) -> StoreResult<bool> {
        self.reserve_token_attempt_impl(serial, now, clear_minutes, count_auth)
            .await
    }
    async fn release_token_attempt(&self, serial: &Serial, count_auth: bool) -> StoreResult<()> {
        self.release_token_attempt_impl(serial, count_auth).await
    }
    async fn accept_otp(
        &self,
        serial: &Serial,
        counter: i64,
        now: i64,
        count_auth: bool,
    ) -> StoreResult<bool> {
        self.accept_otp_impl(serial, counter, now, count_auth).await
    }
    async fn record_otp_failures(
        &self,
        serials: &[Serial],
        now: i64,
        count_auth: bool,
        clear_minutes: u32,
    ) -> StoreResult<()> {
        self.record_otp_failures_impl(serials, now, count_auth, clear_minutes)
            .await
    }
    async fn set_resync_state(
        &self,
        serial: &Serial,
        counter: Option<i64>,
        at: Option<i64>,
    ) -> StoreResult<()> {
        self.set_resync_state_impl(serial, counter, at).await
    }
}

#[async_trait]
impl FlowStore for SqlStore {
    async fn create_transaction(
        &self,
        tx: &Transaction,
        message: Option<&OutboxMessage>,
    ) -> StoreResult<()> {
        self.create_transaction_impl(tx, message).await
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
        self.advance_with_code_impl(id, from, to, serials, code, message)
            .await
    }
    async fn reserve_code_attempt(
        &self,
        id: &TransactionId,
        factor: u32,
        max: u32,
        now: i64,
    ) -> StoreResult<Option<String>> {
        self.reserve_code_attempt_impl(id, factor, max, now).await
    }
    async fn consume_code(&self, id: &TransactionId, hash: &str) -> StoreResult<bool> {
        self.consume_code_impl(id, hash).await
    }
    async fn answer_link(
        &self,
        id: &TransactionId,
        hash: &str,
        status: TxStatus,
        now: i64,
    ) -> StoreResult<bool> {
        self.answer_link_impl(id, hash, status, now).await
    }
    async fn transaction(&self, id: &TransactionId) -> StoreResult<Option<Transaction>> {
        self.transaction_impl(id).await
    }
    async fn advance_transaction(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        complete: bool,
    ) -> StoreResult<bool> {
        self.advance_transaction_impl(id, from, to, serials, complete)
            .await
    }
    async fn set_transaction_status(
        &self,
        id: &TransactionId,
        status: TxStatus,
    ) -> StoreResult<bool> {
        self.set_transaction_status_impl(id, status).await
    }
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_outbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        self.claim_outbox_impl(now, lease_until, limit).await
    }
    async fn finish_outbox(
        &self,
        id: &str,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> StoreResult<bool> {
        self.finish_outbox_impl(id, attempt, result, now).await
    }
    async fn queue_message(&self, message: &OutboxMessage) -> StoreResult<()> {
        let stmt = self.outbox_insert_if(message, None)?;
        self.db.execute(&stmt.sql, stmt.params, "outbox").await?;
        Ok(())
    }
    async fn list_outbox(&self, all: bool, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
        self.list_outbox_impl(all, limit).await
    }
}

#[async_trait]
impl LockStore for SqlStore {
    async fn lock_state(&self, key: &LockKey) -> StoreResult<Option<LockState>> {
        self.lock_state_impl(key).await
    }
    async fn reserve_attempt(
        &self,
        key: &LockKey,
        kind: FailKind,
        now: i64,
        policy: &LockPolicy,
    ) -> StoreResult<Option<LockState>> {
        self.reserve_attempt_impl(key, kind, now, policy).await
    }
    async fn release_attempt(&self, reservation: &Reservation) -> StoreResult<()> {
        self.release_attempt_impl(reservation).await
    }
    async fn clear_locks(&self, keys: &[LockKey]) -> StoreResult<()> {
        self.clear_locks_impl(keys).await
    }
    async fn clear_locks_with_prefix(&self, prefix: &str) -> StoreResult<u64> {
        self.clear_locks_with_prefix_impl(prefix).await
    }
    async fn locks_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, LockState)>> {
        self.locks_with_prefix_impl(prefix, limit).await
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        self.append_audit_impl(record).await
    }
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        self.query_audit_impl(query).await
    }
}

#[async_trait]
impl AdminStore for SqlStore {
    async fn create_admin(&self, admin: &AdminAccount) -> StoreResult<()> {
        self.create_admin_impl(admin).await
    }
    async fn admin(&self, name: &str) -> StoreResult<Option<AdminAccount>> {
        self.admin_impl(name).await
    }
    async fn list_admins(&self) -> StoreResult<Vec<AdminAccount>> {
        self.list_admins_impl().await
    }
    async fn update_admin_password(&self, name: &str, password_hash: &str) -> StoreResult<bool> {
        self.update_admin_password_impl(name, password_hash).await
    }
    async fn delete_admin(&self, name: &str) -> StoreResult<bool> {
        self.delete_admin_impl(name).await
    }
    async fn create_session(&self, session: &AdminSession) -> StoreResult<()> {
        self.create_session_impl(session).await
    }
    async fn session(&self, token_hash: &str) -> StoreResult<Option<AdminSession>> {
        self.session_impl(token_hash).await
    }
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.delete_session_impl(token_hash).await
    }
    async fn delete_sessions_of(&self, admin: &str) -> StoreResult<()> {
        self.delete_sessions_of_impl(admin).await
    }
}

#[async_trait]
impl WebStateStore for SqlStore {
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.revoke_token_impl(jti, expires_at).await
    }
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.token_revoked_impl(jti).await
    }
    async fn put_refresh_token(
        &self,
        token: &tessera_core::store::RefreshToken,
    ) -> StoreResult<()> {
        self.put_refresh_token_impl(token).await
    }
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::RefreshToken>> {
        self.use_refresh_token_impl(hash, client_id, now).await
    }
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::RefreshToken>> {
        self.spent_refresh_token_impl(hash, client_id, now).await
    }
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
    ) -> StoreResult<u64> {
        self.revoke_refresh_tokens_impl(client_id, username, realm)
            .await
    }
    async fn put_web_state(&self, state: &tessera_core::store::WebState) -> StoreResult<()> {
        self.put_web_state_impl(state).await
    }
    async fn claim_web_state(
        &self,
        state: &tessera_core::store::WebState,
        now: i64,
    ) -> StoreResult<bool> {
        self.claim_web_state_impl(state, now).await
    }
    async fn web_state(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        self.web_state_impl(kind, key_hash, now, false).await
    }
    async fn take_web_state(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        self.web_state_impl(kind, key_hash, now, true).await
    }
    async fn web_states_of(
        &self,
        kind: &str,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<tessera_core::store::WebState>> {
        self.web_states_of_impl(kind, subject, now).await
    }
    async fn delete_web_state(&self, kind: &str, key_hash: &str) -> StoreResult<bool> {
        self.delete_web_state_impl(kind, key_hash).await
    }
}
