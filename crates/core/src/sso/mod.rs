//! Web sign-in state: what a browser or a relying party holds between requests once the
//! engine has decided — login flows under way, SSO sessions, OpenID Connect authorization codes,
//! refresh tokens and revoked access tokens, SAML logouts under way and the replay marks of
//! SAML requests and encrypted payloads — and the token policy of OAuth2 API clients
//! ([`grant`]: what a token after a login step is).
//!
//! The front doors (the login pages, OAuth2, OIDC, SAML) keep nothing themselves: they hold a
//! random key (a cookie, a code, a refresh token) and ask this service what it stands for. Keys
//! are kept only as their SHA-256 (a copy of the store gives no one a session). Everything here
//! goes through the narrow [`WebStateStore`] role with typed [`WebStateKind`]s; updates that can
//! race (two tabs of one browser) are conditional, and single-use things (codes, refresh tokens,
//! replay marks) are taken by one deciding write.

mod codes;
mod grants;
mod sessions;
#[cfg(test)]
mod tests;
mod tokens;

pub use codes::{AuthCode, ReusedCode, SpentCode, pkce_matches};
pub use grants::Once;
pub use sessions::{SessionLimits, SignIn, SignedIn};
pub use tokens::{TokenAsk, TokenGrant, TokenRole, grant};

use crate::clock::Clock;
use crate::model::AuditRecord;
use crate::rng::Rng;
use crate::store::{AuditStore, StoreResult, WebState, WebStateKind, WebStateStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The web sign-in state service (one per engine: [`crate::engine::Engine::sso`]).
#[derive(Clone)]
pub struct Sso {
    web: Arc<dyn WebStateStore>,
    audit: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso").finish_non_exhaustive()
    }
}

/// The stored form of a key a browser or client holds: its SHA-256, hex.
pub fn key_hash(key: &str) -> String {
    crate::model::ApiClient::hash_secret(key)
}

impl Sso {
    pub fn new(
        web: Arc<dyn WebStateStore>,
        audit: Arc<dyn AuditStore>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
    ) -> Sso {
        Sso {
            web,
            audit,
            clock,
            rng,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// A new random key (256 bits, URL-safe): for a cookie, a code, a refresh token.
    pub fn new_key(&self) -> String {
        crate::rng::random_token(self.rng.as_ref())
    }

    /// Keeps `data` under `key` (by its hash) until `expires_at`, replacing what was there.
    async fn put<T: Serialize>(
        &self,
        kind: WebStateKind,
        key: &str,
        subject: String,
        data: &T,
        expires_at: i64,
    ) -> StoreResult<()> {
        let data = serde_json::to_string(data)
            .map_err(|e| crate::store::StoreError::Backend(format!("{kind} not encoded: {e}")))?;
        self.web
            .put_web_state(&WebState {
                kind,
                key_hash: key_hash(key),
                subject,
                data,
                expires_at,
            })
            .await
    }

    /// What is kept under `key` and when it ends; none when there is nothing live, or what is
    /// there does not read as a `T` (written by another version: as good as gone).
    async fn get<T: DeserializeOwned>(
        &self,
        kind: WebStateKind,
        key: &str,
    ) -> StoreResult<Option<(T, i64)>> {
        let kept = self.web.web_state(kind, &key_hash(key), self.now()).await?;
        Ok(kept.and_then(|k| Some((serde_json::from_str(&k.data).ok()?, k.expires_at))))
    }

    /// The same, taken: of two callers at once, one gets it.
    async fn take<T: DeserializeOwned>(
        &self,
        kind: WebStateKind,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let kept = self
            .web
            .take_web_state(kind, &key_hash(key), self.now())
            .await?;
        Ok(kept.and_then(|k| serde_json::from_str(&k.data).ok()))
    }

    async fn delete(&self, kind: WebStateKind, key: &str) -> StoreResult<bool> {
        self.web.delete_web_state(kind, &key_hash(key)).await
    }

    // Login flows: a sign-in on the login page under way. What it is for (an OpenID Connect
    // authorization request, a SAML request, the account pages) is the door's own type.

    /// Keeps a login flow under the key of its cookie until `expires_at`.
    pub async fn keep_flow<F: Serialize>(
        &self,
        key: &str,
        flow: &F,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.put(
            WebStateKind::LoginFlow,
            key,
            String::new(),
            flow,
            expires_at,
        )
        .await
    }

    /// The live login flow under a cookie's key, and when it ends.
    pub async fn flow<F: DeserializeOwned>(&self, key: &str) -> StoreResult<Option<(F, i64)>> {
        self.get(WebStateKind::LoginFlow, key).await
    }

    /// Forgets a login flow (it finished).
    pub async fn end_flow(&self, key: &str) -> StoreResult<bool> {
        self.delete(WebStateKind::LoginFlow, key).await
    }

    // SAML front-channel logouts under way: the door's own record of who is still to be told.

    pub async fn keep_saml_logout<L: Serialize>(
        &self,
        key: &str,
        logout: &L,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.put(
            WebStateKind::SamlLogout,
            key,
            String::new(),
            logout,
            expires_at,
        )
        .await
    }

    pub async fn saml_logout<L: DeserializeOwned>(&self, key: &str) -> StoreResult<Option<L>> {
        Ok(self
            .get(WebStateKind::SamlLogout, key)
            .await?
            .map(|(l, _)| l))
    }

    pub async fn end_saml_logout(&self, key: &str) -> StoreResult<bool> {
        self.delete(WebStateKind::SamlLogout, key).await
    }

    /// Appends an audit record of single sign-on (door `web`, result `ok`); a failure is
    /// logged, not returned: what it records already happened.
    pub async fn audit(
        &self,
        action: &str,
        actor: &str,
        (user, realm): (&str, &str),
        application: Option<&str>,
        reason: &str,
    ) {
        let record = AuditRecord::event(self.clock.now_millis(), "web", actor, action)
            .user(Some(user.into()), Some(realm.into()))
            .application(application.map(str::to_string))
            .ended("ok", reason);
        if let Err(e) = self.audit.append_audit(&record).await {
            tracing::warn!(error = %e, action, "single sign-on not audited");
        }
    }
}
