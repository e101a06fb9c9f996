//! The RS256 key for ID tokens of relying parties that need RS256 (OpenID Connect's default
//! algorithm). ring signs with RSA in constant time but cannot make RSA keys, and the pure-Rust
//! `rsa` crate is not used (RUSTSEC-2023-0071): the administrator makes the key with OpenSSL and
//! imports it (`tessera oidc import-key`); it is kept sealed under the master key.

use data_encoding::{BASE64, BASE64URL_NOPAD};
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{Value, json};
use std::sync::Arc;
use tessera_core::store::Store;

const META: &str = "oidc_rsa_key";
const CONTEXT: &str = "oidc:rsa_key";

/// The stored (sealed) value the signer was read from, and the signer.
pub(crate) type Cache = std::sync::Mutex<Option<(String, Arc<RsaSigner>)>>;

pub(crate) struct RsaSigner {
    key: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl RsaSigner {
    pub(crate) fn of_pkcs8(der: &[u8]) -> Result<Self, String> {
        let key = RsaKeyPair::from_pkcs8(der).map_err(|e| match e.to_string().as_str() {
            "TooSmall" => "the RSA key must have at least 2048 bits".to_string(),
            why => format!("not a usable RSA private key (PKCS#8): {why}"),
        })?;
        if key.public().modulus_len() < 256 {
            return Err("the RSA key must have at least 2048 bits".into());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = format!(
            "rsa-{}",
            data_encoding::HEXLOWER.encode(&digest.as_ref()[..8])
        );
        Ok(RsaSigner {
            key,
            kid,
            rng: SystemRandom::new(),
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
            .map_err(|_| "RSA signing failed".to_string())?;
        Ok(sig)
    }

    /// Signs `claims` as an RS256 JWT of type `typ`.
    pub(crate) fn sign_typed(&self, claims: &Value, typ: &str) -> Result<String, String> {
        let header = json!({"alg": "RS256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
        );
        let sig = self.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(&sig)))
    }

    pub(crate) fn jwk(&self) -> Value {
        let c: RsaPublicKeyComponents<Vec<u8>> = self.key.public().into();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": BASE64URL_NOPAD.encode(&c.n), "e": BASE64URL_NOPAD.encode(&c.e),
        })
    }
}

/// The imported key, if there is one.
pub(crate) async fn signer(state: &crate::HttpState) -> Result<Option<Arc<RsaSigner>>, String> {
    let store = state.engine.store();
    let Some(stored) = store.meta(META).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Ok(cache) = state.rsa_signer.lock()
        && let Some((raw, signer)) = cache.as_ref()
        && *raw == stored
    {
        return Ok(Some(signer.clone()));
    }
    let sealed = BASE64
        .decode(stored.as_bytes())
        .map_err(|e| format!("RSA key: {e}"))?;
    let der = store
        .open_secret(&sealed, CONTEXT)
        .map_err(|e| e.to_string())?;
    let signer = Arc::new(RsaSigner::of_pkcs8(&der)?);
    if let Ok(mut cache) = state.rsa_signer.lock() {
        *cache = Some((stored, signer.clone()));
    }
    Ok(Some(signer))
}

/// Imports an RSA private key (PEM, PKCS#8: `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:3072`), replacing the one before; returns its key id.
pub async fn import(store: &dyn Store, pem: &str) -> Result<String, String> {
    let der = pkcs8_of_pem(pem)?;
    let signer = RsaSigner::of_pkcs8(&der)?;
    let sealed = store.seal_secret(&der, CONTEXT);
    store
        .set_meta(META, &BASE64.encode(&sealed))
        .await
        .map_err(|e| e.to_string())?;
    Ok(signer.kid)
}

/// The DER of a PEM private key (PKCS#8, `-----BEGIN PRIVATE KEY-----`).
pub(crate) fn pkcs8_of_pem(pem: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use rustls::pki_types::pem::{self, PemObject};
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(
        |e| match e {
            pem::Error::NoItemsFound => {
                "expected a PEM \"PRIVATE KEY\" (PKCS#8), as openssl genpkey writes it".to_string()
            }
            e => format!("not a readable PEM private key: {e}"),
        },
    )?;
    Ok(zeroize::Zeroizing::new(key.secret_pkcs8_der().to_vec()))
}
