//! What relying parties and API clients hold after a sign-in: access tokens (revoked ones
//! remembered until they expire anyway), refresh tokens (spent once, rotated, a spent one
//! presented again revokes the client's others for the user — RFC 9700 §4.14.2), and the
//! one-time marks against replays of SAML requests and encrypted payloads.

use super::{Sso, key_hash};
use crate::store::{RefreshToken, StoreResult, WebState, WebStateKind};

/// Something accepted once and refused after, while it could be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Once {
    /// A SAML request ID of a service provider.
    SamlRequest,
    /// The nonce of an encrypted request payload.
    PayloadNonce,
}

impl Once {
    fn kind(self) -> WebStateKind {
        match self {
            Once::SamlRequest => WebStateKind::SamlRequestSeen,
            Once::PayloadNonce => WebStateKind::PayloadNonce,
        }
    }
}

/// How long a refresh token reuse mark is kept (longer than any renewal takes).
const REUSE_MARK_SECONDS: i64 = 86_400;

fn reuse_key(client_id: &str, username: &str, realm: &str) -> String {
    key_hash(&format!("{client_id}\u{0}{realm}\u{0}{username}"))
}

impl Sso {
    /// Whether `id` is new (then it is remembered until `until`): one deciding write, so of
    /// two copies at once one wins.
    pub async fn first_use(&self, what: Once, id: &str, until: i64) -> StoreResult<bool> {
        self.web
            .claim_web_state(
                &WebState {
                    kind: what.kind(),
                    key_hash: key_hash(id),
                    subject: String::new(),
                    data: String::new(),
                    expires_at: until,
                },
                self.now(),
            )
            .await
    }

    /// Remembers that the access token `jti` is revoked until it expires anyway.
    pub async fn revoke_access(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        self.web.revoke_token(jti, expires_at).await
    }

    pub async fn access_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.web.token_revoked(jti).await
    }

    /// A new refresh token of `client_id` for the user, kept by its hash until `expires_at`;
    /// the token.
    pub async fn issue_refresh_token(
        &self,
        client_id: &str,
        (username, realm): (&str, &str),
        scope: &str,
        expires_at: i64,
    ) -> StoreResult<String> {
        let refresh = self.new_key();
        self.web
            .put_refresh_token(&RefreshToken {
                hash: key_hash(&refresh),
                client_id: client_id.to_string(),
                username: username.to_string(),
                realm: realm.to_string(),
                scope: scope.to_string(),
                expires_at,
            })
            .await?;
        Ok(refresh)
    }

    /// Spends a live refresh token of `client_id`, once: what it was for.
    pub async fn use_refresh_token(
        &self,
        refresh: &str,
        client_id: &str,
    ) -> StoreResult<Option<RefreshToken>> {
        self.web
            .use_refresh_token(&key_hash(refresh), client_id, self.now())
            .await
    }

    /// Spends every live refresh token `client_id` holds for the user; how many.
    pub async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64> {
        self.web
            .revoke_refresh_tokens(client_id, username, realm, now)
            .await
    }

    /// A spent refresh token presented again was copied — by an attacker or from the client —
    /// and which of the two holds the live one cannot be told: the reuse is marked (a renewal
    /// under way sees it after keeping its new token) and every refresh token the client holds
    /// for the user is spent. What the spent token was for and how many were revoked; none
    /// when `refresh` is no spent token of the client.
    pub async fn refresh_presented_again(
        &self,
        refresh: &str,
        client_id: &str,
    ) -> StoreResult<Option<(RefreshToken, u64)>> {
        let now = self.now();
        let Some(spent) = self
            .web
            .spent_refresh_token(&key_hash(refresh), client_id, now)
            .await?
        else {
            return Ok(None);
        };
        // The mark first: a renewal under way sees it after keeping its new token.
        let mark = WebState {
            kind: WebStateKind::RefreshReuse,
            key_hash: reuse_key(client_id, &spent.username, &spent.realm),
            subject: String::new(),
            data: self.clock.now_millis().to_string(),
            expires_at: now + REUSE_MARK_SECONDS,
        };
        if let Err(e) = self.web.put_web_state(&mark).await {
            tracing::error!(error = %e, "refresh token reuse not marked");
        }
        let revoked = match self
            .revoke_refresh_tokens(client_id, &spent.username, &spent.realm, now)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "refresh tokens of a reused one not revoked");
                0
            }
        };
        Ok(Some((spent, revoked)))
    }

    /// Whether a spent refresh token of the client for the user came back at or after
    /// `since_ms` (Unix milliseconds).
    pub async fn reuse_marked_since(
        &self,
        client_id: &str,
        (username, realm): (&str, &str),
        since_ms: i64,
    ) -> StoreResult<bool> {
        let mark = self
            .web
            .web_state(
                WebStateKind::RefreshReuse,
                &reuse_key(client_id, username, realm),
                self.now(),
            )
            .await?;
        Ok(mark.is_some_and(|m| m.data.parse::<i64>().is_ok_and(|at| at >= since_ms)))
    }
}
