//! Payload encryption (seed 003's "API encryption"): when the `encryption_enabled` setting is
//! on, the endpoints named in `encryption_endpoints` accept only bodies sealed with HPKE
//! (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode) to the
//! installation's public key. The sealed plaintext carries a timestamp, checked against
//! `encryption_valid_seconds`, and a nonce, refused when seen again. This stops scripts that
//! replay or forge OTP-triggering calls without the key.
//!
//! The envelope (JSON): `{"enc": base64(encapsulated key), "ct": base64(ciphertext)}`; the
//! plaintext (JSON): `{"ts": unix seconds, "nonce": "...", "body": "the original body"}`.

use crate::HttpState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde_json::{Value, json};

type Kem = X25519HkdfSha256;

/// Binds sealed payloads to this use.
const INFO: &[u8] = b"tessera payload v1";
const SLOT: tessera_core::keys::KeySlot = tessera_core::keys::KeySlot::Payload;

/// The installation's key pair: (private, public), made on first use and sealed in the store.
pub async fn key_pair(
    keys: &tessera_core::keys::Keys,
) -> Result<
    (
        <Kem as hpke::Kem>::PrivateKey,
        <Kem as hpke::Kem>::PublicKey,
    ),
    String,
> {
    let stored = keys
        .stored_or_made(SLOT, || {
            let (sk, _) = Kem::gen_keypair();
            Ok(zeroize::Zeroizing::new(sk.to_bytes().to_vec()))
        })
        .await
        .map_err(|e| e.to_string())?;
    let raw = keys.open(SLOT, &stored).map_err(|e| e.to_string())?;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&raw)
        .map_err(|_| "the stored payload key cannot be read".to_string())?;
    let pk = Kem::sk_to_pk(&sk);
    Ok((sk, pk))
}

/// Replaces the installation's key pair with the organisation's own (seed 003's
/// CONF_ENCRYPTION_PRIVATE_KEY): an X25519 private key as base64 of its 32 bytes, or as PEM
/// (`openssl genpkey -algorithm X25519`). `public_key` (base64), when given, must be the one
/// the private key makes. Returns the public key (base64). Payloads sealed to the key before
/// are refused from then on.
pub async fn import_key(
    keys: &tessera_core::keys::Keys,
    private_key: &str,
    public_key: Option<&str>,
) -> Result<String, String> {
    let text = private_key.trim();
    let raw: zeroize::Zeroizing<Vec<u8>> = if text.starts_with("-----BEGIN") {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        use rustls::pki_types::pem::PemObject;
        let der = PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
            .map_err(|_| "expected a PEM \"PRIVATE KEY\" (openssl genpkey -algorithm X25519)")?;
        // PKCS#8 of X25519 (RFC 8410): the algorithm 1.3.101.110, then the 32 key bytes.
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22,
            0x04, 0x20,
        ];
        let der = der.secret_pkcs8_der();
        match der.strip_prefix(&PREFIX[..]) {
            Some(key) if key.len() == 32 => zeroize::Zeroizing::new(key.to_vec()),
            _ => return Err("the PEM key is not an X25519 key".into()),
        }
    } else {
        let bytes = BASE64
            .decode(text.as_bytes())
            .map_err(|_| "expected the X25519 private key in base64 (32 bytes) or PEM")?;
        if bytes.len() != 32 {
            return Err(format!(
                "an X25519 private key is 32 bytes; this one is {}",
                bytes.len()
            ));
        }
        zeroize::Zeroizing::new(bytes)
    };
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&raw)
        .map_err(|_| "not a usable X25519 private key".to_string())?;
    let pk = BASE64.encode(&Kem::sk_to_pk(&sk).to_bytes());
    if let Some(given) = public_key
        && given.trim() != pk
    {
        return Err(format!(
            "the public key given is not the private key's (that one is {pk}); nothing was changed"
        ));
    }
    keys.put(SLOT, &raw).await.map_err(|e| e.to_string())?;
    Ok(pk)
}

/// The public key integrators encrypt to (base64).
pub async fn public_key(keys: &tessera_core::keys::Keys) -> Result<String, String> {
    Ok(BASE64.encode(&key_pair(keys).await?.1.to_bytes()))
}

/// Seals `body` for the installation whose public key is `public_key_b64` (what the CLI helper
/// and integrators do).
pub fn seal(public_key_b64: &str, body: &str, ts: i64, nonce: &str) -> Result<String, String> {
    let pk_bytes = BASE64
        .decode(public_key_b64.trim().as_bytes())
        .map_err(|e| format!("public key: {e}"))?;
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&pk_bytes)
        .map_err(|_| "public key: not an X25519 key".to_string())?;
    let plain = json!({"ts": ts, "nonce": nonce, "body": body}).to_string();
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        INFO,
        plain.as_bytes(),
        b"",
    )
    .map_err(|e| format!("sealing failed: {e}"))?;
    Ok(json!({"enc": BASE64.encode(&enc.to_bytes()), "ct": BASE64.encode(&ct)}).to_string())
}

/// A sealed payload, opened: its timestamp, nonce and the body it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub ts: i64,
    pub nonce: String,
    pub body: String,
}

/// The encapsulated key and the ciphertext of an envelope.
fn envelope_parts(envelope: &[u8]) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
    const NOT_SEALED: &str = "this endpoint takes only encrypted payloads ({\"enc\", \"ct\"})";
    let envelope = serde_json::from_slice::<Value>(envelope).map_err(|_| NOT_SEALED)?;
    match (
        envelope["enc"]
            .as_str()
            .and_then(|e| BASE64.decode(e.as_bytes()).ok()),
        envelope["ct"]
            .as_str()
            .and_then(|c| BASE64.decode(c.as_bytes()).ok()),
    ) {
        (Some(enc), Some(ct)) => Ok((enc, ct)),
        _ => Err(NOT_SEALED),
    }
}

/// Opens a sealed envelope with the installation's private key (its bytes): the opened payload,
/// or why it is refused. Nothing about freshness or replays is decided here.
pub fn open(private_key: &[u8], envelope: &[u8]) -> Result<Opened, &'static str> {
    let (enc, ct) = envelope_parts(envelope)?;
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(private_key)
        .map_err(|_| "payload key unavailable")?;
    let plain = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc)
        .ok()
        .and_then(|enc| {
            hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
                &OpModeR::Base,
                &sk,
                &enc,
                INFO,
                &ct,
                b"",
            )
            .ok()
        })
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .ok_or("the payload cannot be decrypted (wrong key, or changed on the way)")?;
    let (Some(ts), Some(nonce), Some(body)) = (
        plain["ts"].as_i64(),
        plain["nonce"]
            .as_str()
            .filter(|n| (16..=128).contains(&n.len())),
        plain["body"].as_str(),
    ) else {
        return Err("the payload lacks ts, nonce (16 to 128 characters) or body");
    };
    Ok(Opened {
        ts,
        nonce: nonce.to_string(),
        body: body.to_string(),
    })
}

fn refuse(why: &str) -> Response {
    let mut res = (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_request", "error_description": why})),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Whether `path` is one of the endpoints the setting lists.
fn listed(list: &str, path: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|p| !p.is_empty() && p == path)
}

/// The middleware: opens sealed bodies of the listed endpoints (and refuses anything else
/// there) before the handler sees the request.
pub(crate) async fn open_payloads(
    State(state): State<HttpState>,
    req: Request,
    next: Next,
) -> Response {
    let settings = state.engine.snapshot().settings.clone();
    if !settings.encryption_enabled || !listed(&settings.encryption_endpoints, req.uri().path()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_BODY).await else {
        return refuse("the body is too large");
    };
    // Junk is refused before the key is read from the store.
    if let Err(why) = envelope_parts(&bytes) {
        return refuse(why);
    }
    let sk = match key_pair(state.engine.keys()).await {
        Ok((sk, _)) => sk,
        Err(e) => {
            tracing::error!(error = %e, "payload key unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "payload key unavailable").into_response();
        }
    };
    let Opened {
        ts,
        nonce,
        body: inner,
    } = match open(&sk.to_bytes(), &bytes) {
        Ok(opened) => opened,
        Err(why) => return refuse(why),
    };
    let now = state.engine.clock().now();
    let window = i64::from(settings.encryption_valid_seconds);
    if (now - ts).abs() > window {
        return refuse("the payload is outside its validity window (check the clock)");
    }
    // Seen before: refused. Remembered for as long as it could be replayed, by one claiming
    // write: of two copies sent at once, one passes.
    match state
        .engine
        .sso()
        .first_use(
            tessera_core::sso::Once::PayloadNonce,
            &nonce,
            ts + window + 1,
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return refuse("the payload was used already"),
        Err(e) => {
            tracing::error!(error = %e, "replay check failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(inner.to_string())))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_open_with_the_key_only() {
        let (sk, pk) = Kem::gen_keypair();
        let sealed = seal(
            &BASE64.encode(&pk.to_bytes()),
            "a=1&b=2",
            100,
            "n0nce-of-16-chars",
        )
        .unwrap();
        let env: Value = serde_json::from_str(&sealed).unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(
            &BASE64
                .decode(env["enc"].as_str().unwrap().as_bytes())
                .unwrap(),
        )
        .unwrap();
        let ct = BASE64
            .decode(env["ct"].as_str().unwrap().as_bytes())
            .unwrap();
        let plain = hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            INFO,
            &ct,
            b"",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(
            (v["ts"].as_i64(), v["body"].as_str()),
            (Some(100), Some("a=1&b=2"))
        );
        let (other, _) = Kem::gen_keypair();
        assert!(
            hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
                &OpModeR::Base,
                &other,
                &enc,
                INFO,
                &ct,
                b""
            )
            .is_err()
        );
        assert!(listed("/oauth/token, /oauth/mfa", "/oauth/mfa"));
        assert!(!listed("/oauth/token", "/oauth/tokenx"));
    }
}
