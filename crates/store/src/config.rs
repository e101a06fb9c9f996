//! Meta values, settings and configuration documents.

use crate::SqlStore;
use crate::db::{Stmt, params};
use serde_json::{Map, Value};
use tessera_core::store::{ConfigDoc, ConfigKind, StoreError, StoreResult};

const BUMP: &str = "UPDATE config_version SET version = version + 1 WHERE id = 1";

impl SqlStore {
    pub(crate) async fn meta_impl(&self, key: &str) -> StoreResult<Option<String>> {
        self.db
            .query_one("SELECT value FROM meta WHERE key = $1", params![key])
            .await?
            .map(|r| r.text("value"))
            .transpose()
    }

    pub(crate) async fn set_meta_impl(&self, key: &str, value: &str) -> StoreResult<()> {
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

    pub(crate) async fn init_meta_impl(&self, key: &str, value: &str) -> StoreResult<String> {
        self.db
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
                "meta",
            )
            .await?;
        self.meta_impl(key)
            .await?
            .ok_or_else(|| tessera_core::store::StoreError::Backend(format!("meta {key} vanished")))
    }

    pub(crate) async fn revoke_token_impl(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
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

    pub(crate) async fn token_revoked_impl(&self, jti: &str) -> StoreResult<bool> {
        Ok(self
            .db
            .query_one(
                "SELECT 1 AS one FROM revoked_tokens WHERE jti = $1",
                params![jti],
            )
            .await?
            .is_some())
    }

    pub(crate) async fn put_refresh_token_impl(
        &self,
        t: &tessera_core::store::RefreshToken,
    ) -> StoreResult<()> {
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

    pub(crate) async fn use_refresh_token_impl(
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

    pub(crate) async fn spent_refresh_token_impl(
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

    pub(crate) async fn revoke_refresh_tokens_impl(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
    ) -> StoreResult<u64> {
        self.db
            .execute(
                "UPDATE refresh_tokens SET used = 1 \
                 WHERE client_id = $1 AND username = $2 AND realm = $3 AND used = 0",
                params![client_id, username, realm],
                "refresh token",
            )
            .await
    }

    pub(crate) async fn mfa_password_impl(
        &self,
        user: &tessera_core::ids::UserRef,
    ) -> StoreResult<Option<String>> {
        self.db
            .query_one(
                "SELECT hash FROM mfa_passwords WHERE user_source = $1 AND user_id = $2",
                params![user.source.as_str(), user.id.as_str()],
            )
            .await?
            .map(|r| r.text("hash"))
            .transpose()
    }

    pub(crate) async fn set_mfa_password_impl(
        &self,
        user: &tessera_core::ids::UserRef,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO mfa_passwords (user_source, user_id, hash, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_source, user_id) \
                 DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
                params![user.source.as_str(), user.id.as_str(), hash, now],
                "MFA password",
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn delete_mfa_password_impl(
        &self,
        user: &tessera_core::ids::UserRef,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM mfa_passwords WHERE user_source = $1 AND user_id = $2",
                params![user.source.as_str(), user.id.as_str()],
                "MFA password",
            )
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn put_web_state_impl(
        &self,
        w: &tessera_core::store::WebState,
    ) -> StoreResult<()> {
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

    pub(crate) async fn claim_web_state_impl(
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

    pub(crate) async fn web_state_impl(
        &self,
        kind: &str,
        key_hash: &str,
        now: i64,
        take: bool,
    ) -> StoreResult<Option<tessera_core::store::WebState>> {
        let rows = if take {
            self.db
                .write_query(
                    "DELETE FROM web_state WHERE kind = $1 AND key_hash = $2 AND expires_at > $3 \
                     RETURNING kind, key_hash, subject, data, expires_at",
                    params![kind, key_hash, now],
                    "web state",
                )
                .await?
        } else {
            self.db
                .query(
                    "SELECT kind, key_hash, subject, data, expires_at FROM web_state \
                     WHERE kind = $1 AND key_hash = $2 AND expires_at > $3",
                    params![kind, key_hash, now],
                )
                .await?
        };
        rows.first().map(web_state_of_row).transpose()
    }

    pub(crate) async fn web_states_of_impl(
        &self,
        kind: &str,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<tessera_core::store::WebState>> {
        self.db
            .query(
                "SELECT kind, key_hash, subject, data, expires_at FROM web_state \
                 WHERE kind = $1 AND subject = $2 AND expires_at > $3 ORDER BY expires_at",
                params![kind, subject, now],
            )
            .await?
            .iter()
            .map(web_state_of_row)
            .collect()
    }

    pub(crate) async fn delete_web_state_impl(
        &self,
        kind: &str,
        key_hash: &str,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM web_state WHERE kind = $1 AND key_hash = $2",
                params![kind, key_hash],
                "web state",
            )
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn config_version_impl(&self) -> StoreResult<i64> {
        self.db
            .query_one("SELECT version FROM config_version WHERE id = 1", vec![])
            .await?
            .ok_or_else(|| StoreError::Backend("config_version row missing".into()))?
            .int("version")
    }

    pub(crate) async fn settings_impl(&self) -> StoreResult<Map<String, Value>> {
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

    pub(crate) async fn put_settings_impl(
        &self,
        values: &Map<String, Value>,
        now: i64,
    ) -> StoreResult<()> {
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

    pub(crate) async fn config_docs_impl(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>> {
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

    pub(crate) async fn put_config_doc_impl(
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

    pub(crate) async fn delete_config_doc_impl(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> StoreResult<bool> {
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
}

fn web_state_of_row(r: &crate::db::Row) -> StoreResult<tessera_core::store::WebState> {
    Ok(tessera_core::store::WebState {
        kind: r.text("kind")?,
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
