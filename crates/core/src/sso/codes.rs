//! OpenID Connect authorization codes: issued once a sign-in finished, traded once at the token
//! endpoint, and — presented again while the access token they bought lives — a leak that
//! revokes what they bought (RFC 6749 §4.1.2).

use super::Sso;
use crate::store::{StoreResult, WebStateKind};
use serde::{Deserialize, Serialize};

/// What an authorization code stands for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge; empty when the client asked without PKCE.
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub user: String,
    pub realm: String,
    pub scope: String,
    pub auth_time: i64,
    /// The SSO session's `sid`, for the ID token.
    #[serde(default)]
    pub sid: Option<String>,
}

/// What a traded authorization code bought, kept while that access token lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpentCode {
    pub client_id: String,
    pub code_challenge: String,
    /// The access token's id.
    pub jti: String,
    pub user: String,
    pub realm: String,
    pub expires_at: i64,
}

/// A code presented again by its own client with its PKCE verifier: what it bought was
/// revoked (`revoked` false when the store failed to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReusedCode {
    pub spent: SpentCode,
    pub revoked: bool,
}

/// PKCE S256 (RFC 7636 §4.6): the verifier is well formed and hashes to the challenge
/// (compared in constant time).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use sha2::{Digest, Sha256};
    let verifier_ok = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = data_encoding::BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()));
    verifier_ok
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            computed.as_bytes(),
            challenge.as_bytes(),
        ))
}

impl Sso {
    /// Keeps a new single-use code for `code` for `lifetime` seconds; the code's value.
    pub async fn issue_code(&self, code: &AuthCode, lifetime: i64) -> StoreResult<String> {
        let value = self.new_key();
        self.put(
            WebStateKind::AuthCode,
            &value,
            String::new(),
            code,
            self.now() + lifetime,
        )
        .await?;
        Ok(value)
    }

    /// Takes a live code: what it stands for, once (of two traders at once, one gets it).
    pub async fn redeem_code(&self, value: &str) -> StoreResult<Option<AuthCode>> {
        self.take(WebStateKind::AuthCode, value).await
    }

    /// Remembers what a traded code bought, until `spent.expires_at`. Kept before anything
    /// else is awaited: a copy of the code presented meanwhile must find it.
    pub async fn keep_spent_code(&self, value: &str, spent: &SpentCode) -> StoreResult<()> {
        self.put(
            WebStateKind::SpentCode,
            value,
            String::new(),
            spent,
            spent.expires_at,
        )
        .await
    }

    /// A traded code presented again. Only when its own client presents it with the right
    /// PKCE verifier is it a leak (whoever does holds everything the first caller held): the
    /// access token it bought and the refresh tokens the client holds for the user are
    /// revoked, once (later copies find nothing). Anyone else — a guess, a code read from a
    /// log without its verifier — revokes nothing, so that it cannot sign a user out.
    pub async fn code_presented_again(
        &self,
        value: &str,
        client_id: &str,
        verifier: &str,
    ) -> StoreResult<Option<ReusedCode>> {
        let Some((spent, _)) = self
            .get::<SpentCode>(WebStateKind::SpentCode, value)
            .await?
        else {
            return Ok(None);
        };
        // Without PKCE the client proved itself with its secret already.
        let proved =
            spent.code_challenge.is_empty() || pkce_matches(verifier, &spent.code_challenge);
        if spent.client_id != client_id || !proved {
            return Ok(None);
        }
        if self
            .take::<SpentCode>(WebStateKind::SpentCode, value)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let now = self.now();
        let revoked = self.revoke_access(&spent.jti, spent.expires_at).await;
        if let Err(e) = &revoked {
            tracing::error!(error = %e, "token of a reused code not revoked");
        }
        if let Err(e) = self
            .revoke_refresh_tokens(&spent.client_id, &spent.user, &spent.realm, now)
            .await
        {
            tracing::error!(error = %e, "refresh tokens of a reused code not revoked");
        }
        Ok(Some(ReusedCode {
            spent,
            revoked: revoked.is_ok(),
        }))
    }
}
