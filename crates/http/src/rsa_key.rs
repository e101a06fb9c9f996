//! The imported RSA keys: the RS256 key for ID tokens of relying parties that need RS256 (OpenID
//! Connect's default algorithm) and the key that signs privacyIDEA-style responses of the validate
//! API. ring signs with RSA in constant time but cannot make RSA keys, and the pure-Rust `rsa`
//! crate is not used (RUSTSEC-2023-0071): the administrator makes a key with OpenSSL and imports
//! it (`tessera oidc import-key`, `tessera validate import-key`); it is kept sealed under the
//! master key.

use data_encoding::{BASE64, BASE64URL_NOPAD};
use ring::rand::SystemRandom;
use ring::signature::{
    KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tessera_core::keys::{KeySlot, Keys};

/// Where one imported key is kept.
pub type Slot = KeySlot;

/// The RS256 key of ID tokens.
pub const OIDC_KEY: Slot = KeySlot::OidcRsa;

/// The key that signs the validate API's answers (privacyIDEA's `PI_AUDIT_KEY_PRIVATE`).
pub const RESPONSE_KEY: Slot = KeySlot::ResponseRsa;

/// Per slot: the stored (sealed) value the signer was read from, and the signer.
pub(crate) type Cache = std::sync::Mutex<HashMap<&'static str, (String, Arc<RsaSigner>)>>;

pub(crate) struct RsaSigner {
    key: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl RsaSigner {
    /// A key in PKCS#8 or, failing that, PKCS#1 (`RSAPrivateKey`, as `openssl genrsa
    /// -traditional` and older privacyIDEA installations write it).
    pub(crate) fn of_der(der: &[u8]) -> Result<Self, String> {
        let key = RsaKeyPair::from_pkcs8(der)
            .or_else(|e| RsaKeyPair::from_der(der).map_err(|_| e))
            .map_err(|e| match e.to_string().as_str() {
                "TooSmall" => "the RSA key must have at least 2048 bits".to_string(),
                why => format!("not a usable RSA private key: {why}"),
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

    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256 over `msg`, the salt as long as the digest.
    /// privacyIDEA signs with the longest salt the key allows, but verifies with the salt length
    /// recovered from the signature (OpenSSL's `RSA_PSS_SALTLEN_MAX_SIGN`), so either verifies.
    pub(crate) fn sign_pss(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &self.rng, msg, &mut sig)
            .map_err(|_| "RSA signing failed".to_string())?;
        Ok(sig)
    }

    /// The public key as PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`), as
    /// `openssl pkey -pubout` writes it.
    pub(crate) fn public_pem(&self) -> String {
        // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }
        const ALGORITHM: [u8; 15] = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        let pkcs1 = self.key.public_key().as_ref();
        let mut bits = vec![0u8];
        bits.extend_from_slice(pkcs1);
        let mut body = ALGORITHM.to_vec();
        body.extend(der_item(0x03, &bits));
        let der = der_item(0x30, &body);
        let b64 = BASE64.encode(&der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
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

/// A DER item: tag, definite length, content.
fn der_item(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The imported RS256 key of ID tokens, if there is one.
pub(crate) async fn signer(state: &crate::HttpState) -> Result<Option<Arc<RsaSigner>>, String> {
    signer_in(state, &OIDC_KEY).await
}

/// The key imported into `slot`, if there is one.
pub(crate) async fn signer_in(
    state: &crate::HttpState,
    slot: &Slot,
) -> Result<Option<Arc<RsaSigner>>, String> {
    let keys = state.engine.keys();
    let Some(stored) = keys.stored(*slot).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Ok(cache) = state.rsa_signer.lock()
        && let Some((raw, signer)) = cache.get(slot.meta())
        && *raw == stored
    {
        return Ok(Some(signer.clone()));
    }
    let signer = Arc::new(open(keys, slot, &stored)?);
    if let Ok(mut cache) = state.rsa_signer.lock() {
        cache.insert(slot.meta(), (stored, signer.clone()));
    }
    Ok(Some(signer))
}

/// The signer of a stored (sealed) key.
fn open(keys: &Keys, slot: &Slot, stored: &str) -> Result<RsaSigner, String> {
    let der = keys.open(*slot, stored).map_err(|e| e.to_string())?;
    RsaSigner::of_der(&der)
}

/// What an import or a look at a slot tells: the key id and the public key (PEM).
#[derive(Debug)]
pub struct Imported {
    pub kid: String,
    pub public_pem: String,
}

/// Imports an RSA private key (PEM, PKCS#8: `openssl genpkey -algorithm RSA -pkeyopt
/// rsa_keygen_bits:3072`) into `slot`, replacing the one before.
pub async fn import(keys: &Keys, slot: &Slot, pem: &str) -> Result<Imported, String> {
    let der = rsa_der_of_pem(pem)?;
    let signer = RsaSigner::of_der(&der)?;
    keys.put(*slot, &der).await.map_err(|e| e.to_string())?;
    Ok(Imported {
        public_pem: signer.public_pem(),
        kid: signer.kid,
    })
}

/// The key in `slot`, if one was imported.
pub async fn stored(keys: &Keys, slot: &Slot) -> Result<Option<Imported>, String> {
    let Some(stored) = keys.stored(*slot).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let signer = open(keys, slot, &stored)?;
    Ok(Some(Imported {
        public_pem: signer.public_pem(),
        kid: signer.kid,
    }))
}

/// Forgets the key in `slot`.
pub async fn remove(keys: &Keys, slot: &Slot) -> Result<(), String> {
    keys.remove(*slot).await.map_err(|e| e.to_string())
}

/// The DER of a PEM RSA private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`) or PKCS#1
/// (`-----BEGIN RSA PRIVATE KEY-----`).
fn rsa_der_of_pem(pem: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::{self, PemObject};
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(key)) => {
            Ok(zeroize::Zeroizing::new(key.secret_pkcs8_der().to_vec()))
        }
        Ok(PrivateKeyDer::Pkcs1(key)) => {
            Ok(zeroize::Zeroizing::new(key.secret_pkcs1_der().to_vec()))
        }
        Ok(_) => Err("expected an RSA private key, not an EC one".into()),
        Err(pem::Error::NoItemsFound) => Err(
            "expected a PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\", as openssl genpkey writes it"
                .into(),
        ),
        Err(e) => Err(format!("not a readable PEM private key: {e}")),
    }
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
