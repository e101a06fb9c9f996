//! Meta values and upkeep ([`MetaStore`]), settings and configuration documents
//! ([`ConfigStore`]), web sign-in state and OAuth grants ([`WebStateStore`]).
//!
//! [`MetaStore`]: tessera_core::store::MetaStore
//! [`ConfigStore`]: tessera_core::store::ConfigStore
//! [`WebStateStore`]: tessera_core::store::WebStateStore

use crate::SqlStore;
use crate::db::{Stmt, params};
use serde_json::{Map, Value};
use tessera_core::store::LockKey;
use tessera_core::store::{ConfigDoc, ConfigKind, StoreError, StoreResult, WebStateKind};
use zeroize::Zeroizing;

const BUMP: &str = "UPDATE config_version SET version = version + 1 WHERE id = 1";

impl SqlStore {
    pub(crate) async fn read_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
        take: bool,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        let rows = if take {
            self.db
                .write_query(
                    "DELETE FROM web_state WHERE kind = $1 AND key_hash = $2 AND expires_at > $3 \
                     RETURNING kind, key_hash, subject, data, expires_at",
                    params![kind.as_str(), key_hash, now],
                    "web state",
                )
                .await?
        } else {
            self.db
                .query(
                    "SELECT kind, key_hash, subject, data, expires_at FROM web_state \
                     WHERE kind = $1 AND key_hash = $2 AND expires_at > $3",
                    params![kind.as_str(), key_hash, now],
                )
                .await?
        };
        rows.first().map(web_state_of_row).transpose()
    }
}

fn web_state_of_row(r: &crate::db::Row) -> StoreResult<tessera_core::store::WebState> {
    Ok(tessera_core::store::WebState {
        kind: {
            let name = r.text("kind")?;
            WebStateKind::parse(&name)
                .ok_or_else(|| StoreError::Backend(format!("unknown web state kind '{name}'")))?
        },
        key_hash: r.text("key_hash")?,
        subject: r.text("subject")?,
        data: r.text("data")?,
        expires_at: r.int("expires_at")?,
    })
}

fn refresh_token_of(r: &crate::db::Row) -> StoreResult<tessera_core::store::RefreshToken> {
    Ok(tessera_core::store::RefreshToken {
        hash: r.text("hash")?,
        client_id: r.text("client_id")?,
        username: r.text("username")?,
        realm: r.text("realm")?,
        scope: r.text("scope")?,
        expires_at: r.int("expires_at")?,
    })
}

#[async_trait::async_trait]
impl tessera_core::store::MetaStore for SqlStore {
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
        self.db
            .query_one("SELECT value FROM meta WHERE key = $1", params![key])
            .await?
            .map(|r| r.text("value"))
            .transpose()
    }
    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
                "meta",
            )
            .await?;
        Ok(())
    }
    async fn init_meta(&self, key: &str, value: &str) -> StoreResult<String> {
        self.db
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
                "meta",
            )
            .await?;
        self.meta(key)
            .await?
            .ok_or_else(|| tessera_core::store::StoreError::Backend(format!("meta {key} vanished")))
    }
    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        let mut total = 0;
        // Finished transactions stay an hour for troubleshooting.
        total += self
            .db
            .execute(
                "DELETE FROM transactions WHERE expires_at < $1",
                params![now - 3600],
                "transaction",
            )
            .await?;
        total += self
            .db
            .execute(
                "DELETE FROM admin_sessions WHERE expires_at < $1",
                params![now],
                "session",
            )
            .await?;
        total += self
            .db
            .execute(
                "DELETE FROM refresh_tokens WHERE expires_at < $1",
                params![now],
                "refresh token",
            )
            .await?;
        total += self
            .db
            .execute(
                "DELETE FROM revoked_tokens WHERE expires_at < $1",
                params![now],
                "revoked token",
            )
            .await?;
        total += self
            .db
            .execute(
                "DELETE FROM web_state WHERE expires_at < $1",
                params![now],
                "web state",
            )
            .await?;
        // Delivered and given-up messages stay a week for `tessera outbox --all`.
        total += self
            .db
            .execute(
                "DELETE FROM outbox WHERE status IN ('sent', 'failed') AND updated_at < $1",
                params![now - 7 * 86_400],
                "outbox",
            )
            .await?;
        // A login session's counters, once its transaction (a day at most) is gone.
        let prefix = LockKey::SESSION_PREFIX;
        total += self
            .db
            .execute(
                "DELETE FROM lockouts WHERE substr(key, 1, CAST($1 AS INTEGER)) = $2 \
                 AND first_fail_at < $3",
                params![prefix.chars().count() as i64, prefix, now - 2 * 86_400],
                "lockout",
            )
            .await?;
        // Counters older than the longest possible interval (30 days) count for nothing.
        total += self
            .db
            .execute(
                "DELETE FROM lockouts WHERE first_fail_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
                params![now - 31 * 86_400, now],
                "lockout",
            )
            .await?;
        Ok(total)
    }
}

#[async_trait::async_trait]
impl tessera_core::store::ConfigStore for SqlStore {
    async fn config_version(&self) -> StoreResult<i64> {
        self.db
            .query_one("SELECT version FROM config_version WHERE id = 1", vec![])
            .await?
            .ok_or_else(|| StoreError::Backend("config_version row missing".into()))?
            .int("version")
    }
    async fn settings(&self) -> StoreResult<Map<String, Value>> {
        let rows = self
            .db
            .query("SELECT key, value FROM settings", vec![])
            .await?;
        let mut map = Map::new();
        for row in rows {
            let raw = row.text("value")?;
            let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            map.insert(row.text("key")?, value);
        }
        Ok(map)
    }
    async fn put_settings(&self, values: &Map<String, Value>, now: i64) -> StoreResult<()> {
        let mut stmts: Vec<Stmt> = values
            .iter()
            .map(|(k, v)| {
                Stmt::new(
                    "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    params![k, v.to_string(), now],
                )
            })
            .collect();
        stmts.push(Stmt::new(BUMP, vec![]));
        self.db.transaction(stmts, "settings").await?;
        Ok(())
    }
    async fn config_docs(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>> {
        let rows = self
            .db
            .query(
                "SELECT name, body, updated_at FROM config_docs WHERE kind = $1 ORDER BY name_lc",
                params![kind.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ConfigDoc {
                    kind,
                    name: row.text("name")?,
                    body: row.json("body")?,
                    updated_at: row.int("updated_at")?,
                })
            })
            .collect()
    }
    async fn put_config_doc(
        &self,
        kind: ConfigKind,
        name: &str,
        body: &Value,
        now: i64,
    ) -> StoreResult<()> {
        self.db
            .transaction(
                vec![
                    Stmt::new(
                        "INSERT INTO config_docs (kind, name_lc, name, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (kind, name_lc) DO UPDATE SET name = excluded.name, body = excluded.body, \
                         updated_at = excluded.updated_at",
                        params![kind.as_str(), name.to_lowercase(), name, body.to_string(), now],
                    ),
                    Stmt::new(BUMP, vec![]),
                ],
                "configuration",
            )
            .await?;
        Ok(())
    }
    async fn delete_config_doc(&self, kind: ConfigKind, name: &str) -> StoreResult<bool> {
        let counts = self
            .db
            .transaction(
                vec![
                    Stmt::new(
                        "DELETE FROM config_docs WHERE kind = $1 AND name_lc = $2",
                        params![kind.as_str(), name.to_lowercase()],
                    ),
                    Stmt::new(BUMP, vec![]),
                ],
                "configuration",
            )
            .await?;
        Ok(counts.first().copied().unwrap_or(0) > 0)
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

#[async_trait::async_trait]
impl tessera_core::store::WebStateStore for SqlStore {
    async fn revoke_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (jti) DO NOTHING",
                params![jti, expires_at],
                "revoked token",
            )
            .await?;
        Ok(())
    }
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(self
            .db
            .query_one(
                "SELECT 1 AS one FROM revoked_tokens WHERE jti = $1",
                params![jti],
            )
            .await?
            .is_some())
    }
    async fn put_refresh_token(&self, t: &tessera_core::store::RefreshToken) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO refresh_tokens (hash, client_id, username, realm, scope, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                params![
                    t.hash.as_str(),
                    t.client_id.as_str(),
                    t.username.as_str(),
                    t.realm.as_str(),
                    t.scope.as_str(),
                    t.expires_at
                ],
                "refresh token",
            )
            .await?;
        Ok(())
    }
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::RefreshToken>> {
        let rows = self
            .db
            .write_query(
                "UPDATE refresh_tokens SET used = 1 WHERE hash = $1 AND client_id = $2 \
                 AND used = 0 AND expires_at > $3 \
                 RETURNING hash, client_id, username, realm, scope, expires_at",
                params![hash, client_id, now],
                "refresh token",
            )
            .await?;
        rows.first().map(refresh_token_of).transpose()
    }
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::RefreshToken>> {
        self.db
            .query_one(
                "SELECT hash, client_id, username, realm, scope, expires_at FROM refresh_tokens \
                 WHERE hash = $1 AND client_id = $2 AND used = 1 AND expires_at > $3",
                params![hash, client_id, now],
            )
            .await?
            .as_ref()
            .map(refresh_token_of)
            .transpose()
    }
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64> {
        self.db
            .execute(
                "UPDATE refresh_tokens SET used = 1 \
                 WHERE client_id = $1 AND username = $2 AND realm = $3 AND used = 0 \
                 AND expires_at > $4",
                params![client_id, username, realm, now],
                "refresh token",
            )
            .await
    }
    async fn put_web_state(&self, w: &tessera_core::store::WebState) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO web_state (kind, key_hash, subject, data, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, key_hash) \
                 DO UPDATE SET subject = excluded.subject, data = excluded.data, \
                 expires_at = excluded.expires_at",
                params![
                    w.kind.as_str(),
                    w.key_hash.as_str(),
                    w.subject.as_str(),
                    w.data.as_str(),
                    w.expires_at
                ],
                "web state",
            )
            .await?;
        Ok(())
    }
    async fn claim_web_state(
        &self,
        w: &tessera_core::store::WebState,
        now: i64,
    ) -> StoreResult<bool> {
        // An expired row under the key is taken over; an unexpired one stays, and nothing is
        // written (no row counted).
        let n = self
            .db
            .execute(
                "INSERT INTO web_state (kind, key_hash, subject, data, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, key_hash) \
                 DO UPDATE SET subject = excluded.subject, data = excluded.data, \
                 expires_at = excluded.expires_at WHERE web_state.expires_at <= $6",
                params![
                    w.kind.as_str(),
                    w.key_hash.as_str(),
                    w.subject.as_str(),
                    w.data.as_str(),
                    w.expires_at,
                    now
                ],
                "web state",
            )
            .await?;
        Ok(n == 1)
    }
    async fn web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        self.read_web_state(kind, key_hash, now, false).await
    }
    async fn take_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        self.read_web_state(kind, key_hash, now, true).await
    }
    async fn web_states_of(
        &self,
        kind: WebStateKind,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<tessera_core::store::WebState>> {
        self.db
            .query(
                "SELECT kind, key_hash, subject, data, expires_at FROM web_state \
                 WHERE kind = $1 AND subject = $2 AND expires_at > $3 ORDER BY expires_at",
                params![kind.as_str(), subject, now],
            )
            .await?
            .iter()
            .map(web_state_of_row)
            .collect()
    }
    async fn update_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        was: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE web_state SET data = $1 WHERE kind = $2 AND key_hash = $3 \
                 AND data = $4 AND expires_at > $5",
                params![data, kind.as_str(), key_hash, was, now],
                "web state",
            )
            .await?;
        Ok(n == 1)
    }
    async fn delete_web_state(&self, kind: WebStateKind, key_hash: &str) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM web_state WHERE kind = $1 AND key_hash = $2",
                params![kind.as_str(), key_hash],
                "web state",
            )
            .await?;
        Ok(n > 0)
    }
}
