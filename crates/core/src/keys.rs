//! The server's own keys and secrets — token signing keys, the SAML identity provider's key
//! pairs, the payload-encryption key, the salt of SAML pseudonyms — each kept sealed under the
//! master key in a meta value of its own ([`KeySlot`]), bound to that slot (a sealed key copied
//! into another slot does not open there, except between the two SAML slots, which rotation
//! moves between). Made on first use or imported by an administrator; the doors that sign with
//! them hold them in their own caches, keyed by the stored form so that a change on another node
//! is seen.

use crate::store::{ConfigStore, MetaStore, StoreError};
use data_encoding::BASE64;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where a key is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySlot {
    /// The ES256 key of access tokens and ID tokens (made on first use).
    OauthSigning,
    /// An imported RSA key for RS256 ID tokens.
    OidcRsa,
    /// An imported RSA key signing `/validate` answers (privacyIDEA's response signing).
    ResponseRsa,
    /// The X25519 key of encrypted request payloads (made on first use or imported).
    Payload,
    /// The SAML identity provider's signing key and certificate.
    SamlIdp,
    /// The SAML key pair published before a rotation makes it the signing one.
    SamlIdpNext,
    /// The salt of persistent SAML name identifiers (made on first use).
    SamlPersistentSalt,
}

impl KeySlot {
    /// The meta value it is kept in (never changes: stored data outlives upgrades).
    pub const fn meta(self) -> &'static str {
        match self {
            KeySlot::OauthSigning => "oauth_signing_key",
            KeySlot::OidcRsa => "oidc_rsa_key",
            KeySlot::ResponseRsa => "response_rsa_key",
            KeySlot::Payload => "payload_key",
            KeySlot::SamlIdp => "saml_idp_key",
            KeySlot::SamlIdpNext => "saml_idp_next_key",
            KeySlot::SamlPersistentSalt => "saml_persistent_salt",
        }
    }

    /// What the sealing binds it to.
    const fn context(self) -> &'static str {
        match self {
            KeySlot::OauthSigning => "oauth:signing_key",
            KeySlot::OidcRsa => "oidc:rsa_key",
            KeySlot::ResponseRsa => "validate:response_key",
            KeySlot::Payload => "payload:private_key",
            KeySlot::SamlIdp | KeySlot::SamlIdpNext => "saml:idp_key",
            KeySlot::SamlPersistentSalt => "saml_persistent_salt",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored {0} is not base64")]
    Encoding(&'static str),
    #[error("{0}")]
    Make(String),
}

/// The key store (one per engine: [`crate::engine::Engine::keys`]).
#[derive(Clone)]
pub struct Keys {
    meta: Arc<dyn MetaStore>,
    sealing: Arc<dyn ConfigStore>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(meta: Arc<dyn MetaStore>, sealing: Arc<dyn ConfigStore>) -> Keys {
        Keys { meta, sealing }
    }

    /// The stored (sealed) form of the key in `slot`; none when there is none or it was
    /// removed. Callers cache what they opened by it.
    pub async fn stored(&self, slot: KeySlot) -> Result<Option<String>, KeyError> {
        Ok(self.meta.meta(slot.meta()).await?.filter(|s| !s.is_empty()))
    }

    /// Opens a stored form of `slot`'s key.
    pub fn open(&self, slot: KeySlot, stored: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let sealed = BASE64
            .decode(stored.as_bytes())
            .map_err(|_| KeyError::Encoding(slot.meta()))?;
        Ok(self.sealing.open_secret(&sealed, slot.context())?)
    }

    fn seal(&self, slot: KeySlot, secret: &[u8]) -> String {
        BASE64.encode(&self.sealing.seal_secret(secret, slot.context()))
    }

    /// Keeps `secret` in `slot`, replacing the one before.
    pub async fn put(&self, slot: KeySlot, secret: &[u8]) -> Result<(), KeyError> {
        Ok(self
            .meta
            .set_meta(slot.meta(), &self.seal(slot, secret))
            .await?)
    }

    /// The stored form of `slot`'s key, made with `make` when there is none yet: nodes racing
    /// here all end up with the one stored first.
    pub async fn stored_or_made(
        &self,
        slot: KeySlot,
        make: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, String>,
    ) -> Result<String, KeyError> {
        if let Some(stored) = self.meta.meta(slot.meta()).await? {
            return Ok(stored);
        }
        let fresh = make().map_err(KeyError::Make)?;
        Ok(self
            .meta
            .init_meta(slot.meta(), &self.seal(slot, &fresh))
            .await?)
    }

    /// Forgets the key in `slot`.
    pub async fn remove(&self, slot: KeySlot) -> Result<(), KeyError> {
        Ok(self.meta.set_meta(slot.meta(), "").await?)
    }

    /// Moves the key in `from` into `to` (a rotation) and empties `from`; false, and nothing
    /// changed, when `from` holds none. Only between slots sealed alike.
    pub async fn promote(&self, from: KeySlot, to: KeySlot) -> Result<bool, KeyError> {
        debug_assert_eq!(from.context(), to.context());
        let Some(stored) = self.stored(from).await? else {
            return Ok(false);
        };
        self.meta.set_meta(to.meta(), &stored).await?;
        self.meta.set_meta(from.meta(), "").await?;
        Ok(true)
    }
}
