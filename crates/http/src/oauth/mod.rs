//! OAuth2 for API clients: `/oauth/token` (client credentials), `/oauth/introspect` (RFC 7662),
//! `/oauth/revoke` (RFC 7009), `/oauth/jwks` and the authorization-server metadata (RFC 8414).
//! Access tokens are JWTs (RFC 9068) signed with ES256. The signature is made and checked with
//! ring (already Tessera's TLS crypto) rather than a JWT crate: one algorithm, a few lines, and
//! no RSA code in the build.

mod client;
mod discovery;
mod error;
mod grants;
mod mfa;
mod tokens;

use crate::HttpState;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::BASE64URL_NOPAD;
pub(crate) use error::OAuthError;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};
use std::sync::Arc;
use tessera_core::keys::KeySlot;
use tessera_core::model::{ApiClient, AuditRecord};

use client::*;
pub(crate) use discovery::*;
pub(crate) use grants::*;
pub(crate) use mfa::*;
pub(crate) use tokens::*;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/mfa", post(mfa))
        .route("/oauth/mfa/otp/validate", post(mfa))
        .route("/oauth/mfa/otp/generate", post(mfa_otp_generate))
        .route("/oauth/mfa/password/setup", post(mfa_password_setup))
        .route("/oauth/mfa/password/reset", post(mfa_password_reset))
        .route("/oauth/otp/generate", post(otp_generate))
        .route("/oauth/otp/validate", post(otp_validate))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/openapi.json", get(openapi))
        .route("/.well-known/oauth-authorization-server", get(metadata))
}

/// The signing key, loaded (or made, once for all nodes) on first use.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

/// The token signer, or the answer when its key cannot be had.
pub(crate) async fn token_signer(state: &HttpState) -> Result<Arc<Signer>, OAuthError> {
    signer(state).await.map_err(|e| {
        tracing::error!(error = %e, "OAuth signing key unavailable");
        OAuthError::Server("no signing key".into())
    })
}

/// Audits what a client did with a code or token it should not have had again.
pub(crate) async fn audit_reuse(
    state: &HttpState,
    client: &ApiClient,
    action: &str,
    (user, realm): (String, String),
    result: &str,
    reason: String,
) {
    let record = AuditRecord::event(
        state.engine.clock().now_millis(),
        "api",
        format!("api:{}", client.name),
        action,
    )
    .user(Some(user), Some(realm))
    .application(client.application.as_ref().map(|a| a.0.clone()))
    .ended(result, reason);
    if let Err(e) = state.engine.audit(&record).await {
        tracing::warn!(error = %e, "{action} not audited");
    }
}

pub(crate) async fn signer(state: &HttpState) -> Result<Arc<Signer>, String> {
    state
        .oauth_signer
        .get_or_try_init(|| async {
            let keys = state.engine.keys();
            let rng = SystemRandom::new();
            let stored = keys
                .stored_or_made(KeySlot::OauthSigning, || {
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map(|d| zeroize::Zeroizing::new(d.as_ref().to_vec()))
                        .map_err(|_| "cannot make a signing key".to_string())
                })
                .await
                .map_err(|e| e.to_string())?;
            let pkcs8 = keys
                .open(KeySlot::OauthSigning, &stored)
                .map_err(|e| e.to_string())?;
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                .map_err(|_| "the stored signing key cannot be read".to_string())?;
            let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
            let kid = data_encoding::HEXLOWER.encode(&digest.as_ref()[..8]);
            Ok(Arc::new(Signer { key, kid, rng }))
        })
        .await
        .cloned()
}

impl Signer {
    fn sign(&self, claims: &Value) -> Result<String, String> {
        self.sign_typed(claims, "at+jwt")
    }

    /// Signs `claims` as a JWT of type `typ` (`at+jwt` access tokens, `JWT` ID tokens).
    pub(crate) fn sign_typed(&self, claims: &Value, typ: &str) -> Result<String, String> {
        let header = json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing failed".to_string())?;
        // ring signs with either s; the token's one valid form has the low one (see `verify`).
        let sig = p256::ecdsa::Signature::from_slice(sig.as_ref())
            .map_err(|_| "signing failed".to_string())?;
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(format!(
            "{input}.{}",
            BASE64URL_NOPAD.encode(&sig.to_bytes())
        ))
    }

    /// The claims of a token this key signed, if the signature holds (expiry not checked).
    fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(h.as_bytes()).ok()?).ok()?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return None;
        }
        let sig = BASE64URL_NOPAD.decode(s.as_bytes()).ok()?;
        // (r, s) and (r, n - s) both verify; only the low-S form is taken, so that a token has
        // one valid form (a changed copy of a revoked or spent token is no new token).
        if p256::ecdsa::Signature::from_slice(&sig)
            .ok()?
            .normalize_s()
            .is_some()
        {
            return None;
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .ok()?;
        serde_json::from_slice(&BASE64URL_NOPAD.decode(c.as_bytes()).ok()?).ok()
    }

    fn jwk(&self) -> Value {
        // An uncompressed P-256 point: 0x04 || x (32) || y (32).
        let p = self.key.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": BASE64URL_NOPAD.encode(&p[1..33]),
            "y": BASE64URL_NOPAD.encode(&p[33..65]),
        })
    }
}

/// The bearer token of `Authorization: Bearer …` (RFC 6750, the scheme in any case; the admin
/// API's `validate::bearer` also takes privacyIDEA's bare tokens and header).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, rest) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// 503 `temporarily_unavailable`: the store or the directory did not answer.
pub(crate) fn unavailable() -> Response {
    OAuthError::unavailable().into_response()
}

pub(crate) fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The issuer of tokens: the `public_url` setting, or the loopback listener's own address
/// (never what a request says its host is: the metadata and the tokens must not depend on it).
pub(crate) fn issuer(state: &HttpState) -> Result<String, OAuthError> {
    state.engine.public_url().ok_or_else(|| {
        tracing::warn!("OAuth needs the public_url setting");
        OAuthError::Unavailable("OAuth is not set up: the public_url setting is empty".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        for path in [
            "/oauth/token",
            "/oauth/mfa",
            "/oauth/introspect",
            "/oauth/revoke",
            "/oauth/jwks",
            "/.well-known/oauth-authorization-server",
            "/oauth/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let source = include_str!("mod.rs");
        let routes = source.matches(".route(\"").count();
        assert_eq!(
            routes,
            doc["paths"].as_object().map_or(0, |p| p.len()),
            "every route is documented"
        );
    }

    /// A token has one valid form: the signature with the low s. Its twin (r, n - s), which
    /// verifies as ECDSA too, is refused.
    #[test]
    fn es256_tokens_take_low_s_signatures_only() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let signer = Signer {
            key,
            kid: "k1".into(),
            rng,
        };
        // Signing many tokens meets high-s signatures from ring about half the time.
        for i in 0..32 {
            let token = signer.sign(&json!({"sub": "alice", "n": i})).unwrap();
            assert_eq!(signer.verify(&token).unwrap()["n"], i);
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap();
            let low = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            assert!(low.normalize_s().is_none(), "signed with the low s");
            // The twin: s' = n - s.
            let (r, s) = low.split_scalars();
            let twin = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
            assert!(twin.normalize_s().is_some());
            let forged = format!("{input}.{}", BASE64URL_NOPAD.encode(&twin.to_bytes()));
            // ring alone would take it.
            let (h, c) = input.split_once('.').unwrap();
            assert!(
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.key.public_key().as_ref())
                    .verify(format!("{h}.{c}").as_bytes(), &twin.to_bytes())
                    .is_ok()
            );
            assert!(signer.verify(&forged).is_none());
        }
    }
}
