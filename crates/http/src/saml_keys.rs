//! The SAML identity provider's signing key and certificate, and the next pair published in
//! the metadata before a switch. The administrator makes them with OpenSSL (ring cannot make RSA
//! keys, and the pure-Rust `rsa` crate is kept away from private keys: RUSTSEC-2023-0071) and
//! imports them with `tessera saml import-key`; the key is sealed under the master key and
//! signs with ring.

use crate::rsa_key::RsaSigner;
use data_encoding::BASE64;
use gamlastan::crypto::kryptering::{self, HashAlgorithm, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_core::keys::{KeySlot, Keys};

const CURRENT: KeySlot = KeySlot::SamlIdp;
const NEXT: KeySlot = KeySlot::SamlIdpNext;
pub(crate) const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// Signing keys read from the store, by the sealed value they were read from.
pub(crate) type Cache = std::sync::Mutex<Vec<(String, Arc<IdpKey>)>>;

#[derive(Serialize, Deserialize)]
struct Stored {
    /// PKCS#8 DER, base64.
    key: String,
    /// X.509 DER, base64.
    cert: String,
}

/// A signing key and its certificate.
pub(crate) struct IdpKey {
    pub(crate) signer: Arc<RsaSigner>,
    pub(crate) cert_der: Vec<u8>,
}

impl IdpKey {
    /// The certificate as the signature templates want it: base64 DER, no armour.
    pub(crate) fn cert_b64(&self) -> String {
        BASE64.encode(&self.cert_der)
    }

    /// A gamlastan signer that signs with this key through ring.
    pub(crate) fn saml_signer(&self) -> gamlastan::crypto::SamlSigner {
        gamlastan::crypto::SamlSigner::with_hsm_signer(
            gamlastan::crypto::KeysManager::new(),
            Arc::new(RingSigner(self.signer.clone())),
        )
    }
}

/// RSA-SHA256 with ring's constant-time RSA: given the whole message (the canonical
/// `SignedInfo`, or a redirect binding's query), it hashes and signs.
struct RingSigner(Arc<RsaSigner>);

impl kryptering::Signer for RingSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::RsaPkcs1v15(HashAlgorithm::Sha256)
    }

    fn sign(&self, data: &[u8]) -> kryptering::Result<Vec<u8>> {
        self.0.sign(data).map_err(kryptering::Error::Crypto)
    }
}

/// A certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `cert_der` holds the public half of `signer`: a probe signed with the key verifies
/// with the certificate.
fn matches(signer: &RsaSigner, cert_der: &[u8]) -> Result<(), String> {
    let key = gamlastan::crypto::keys::loader::load_x509_cert_der(cert_der)
        .map_err(|e| format!("not a usable certificate: {e}"))?;
    let mut km = gamlastan::crypto::KeysManager::new();
    km.add_key(key);
    let verifier = gamlastan::crypto::SamlVerifier::new(km);
    let probe = b"tessera saml key check";
    let sig = signer.sign(probe)?;
    match verifier.verify_redirect_query(probe, &sig, RSA_SHA256) {
        Ok(true) => Ok(()),
        _ => Err("the certificate is not the key's (its public key differs)".into()),
    }
}

/// Imports a key (PEM, PKCS#8) and its certificate (PEM) as the signing pair, or as the next
/// one (published in the metadata, used after `rotate`). Returns the certificate's fingerprint.
pub async fn import(
    keys: &Keys,
    key_pem: &str,
    cert_pem: &str,
    next: bool,
) -> Result<String, String> {
    let der = crate::rsa_key::pkcs8_of_pem(key_pem)?;
    let signer = RsaSigner::of_der(&der)?;
    let cert = tessera_core::model::saml::certificate_der(cert_pem)?;
    matches(&signer, &cert)?;
    let stored = zeroize::Zeroizing::new(
        serde_json::to_vec(&Stored {
            key: BASE64.encode(&der),
            cert: BASE64.encode(&cert),
        })
        .map_err(|e| e.to_string())?,
    );
    keys.put(if next { NEXT } else { CURRENT }, &stored)
        .await
        .map_err(|e| e.to_string())?;
    Ok(fingerprint(&cert))
}

/// Makes the next pair the signing one. Returns the new signing certificate's fingerprint.
pub async fn rotate(keys: &Keys) -> Result<String, String> {
    let no_next = || "there is no next key: import one with `tessera saml import-key --next`";
    let Some(next) = keys.stored(NEXT).await.map_err(|e| e.to_string())? else {
        return Err(no_next().into());
    };
    let key = open(keys, NEXT, &next)?;
    if !keys
        .promote(NEXT, CURRENT)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err(no_next().into());
    }
    Ok(fingerprint(&key.cert_der))
}

/// The fingerprints of the signing and the next certificate.
pub async fn status(keys: &Keys) -> Result<(Option<String>, Option<String>), String> {
    let mut out = Vec::new();
    for which in [CURRENT, NEXT] {
        out.push(match keys.stored(which).await.map_err(|e| e.to_string())? {
            Some(s) => Some(fingerprint(&open(keys, which, &s)?.cert_der)),
            None => None,
        });
    }
    Ok((out[0].clone(), out[1].clone()))
}

fn open(keys: &Keys, slot: KeySlot, sealed: &str) -> Result<IdpKey, String> {
    let raw = keys.open(slot, sealed).map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_slice(&raw).map_err(|e| format!("SAML key: {e}"))?;
    let key_b64 = zeroize::Zeroizing::new(stored.key);
    let der = zeroize::Zeroizing::new(
        BASE64
            .decode(key_b64.as_bytes())
            .map_err(|e| format!("SAML key: {e}"))?,
    );
    Ok(IdpKey {
        signer: Arc::new(RsaSigner::of_der(&der)?),
        cert_der: BASE64
            .decode(stored.cert.as_bytes())
            .map_err(|e| format!("SAML certificate: {e}"))?,
    })
}

async fn load(state: &crate::HttpState, which: KeySlot) -> Result<Option<Arc<IdpKey>>, String> {
    let keys = state.engine.keys();
    let Some(stored) = keys.stored(which).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    if let Ok(cache) = state.saml_keys.lock()
        && let Some((_, k)) = cache.iter().find(|(s, _)| *s == stored)
    {
        return Ok(Some(k.clone()));
    }
    let key = Arc::new(open(keys, which, &stored)?);
    if let Ok(mut cache) = state.saml_keys.lock() {
        if cache.len() >= 4 {
            cache.clear();
        }
        cache.push((stored, key.clone()));
    }
    Ok(Some(key))
}

/// The signing pair, if one was imported.
pub(crate) async fn signing(state: &crate::HttpState) -> Result<Option<Arc<IdpKey>>, String> {
    load(state, CURRENT).await
}

/// The next pair, published before the switch.
pub(crate) async fn next(state: &crate::HttpState) -> Result<Option<Arc<IdpKey>>, String> {
    load(state, NEXT).await
}
