//! Sealing of secrets at rest: AES-256-GCM under the master key, which lives outside the
//! database (a file next to it, or the environment).
//!
//! A sealed value is `version (1) ‖ key id (4) ‖ nonce (12) ‖ ciphertext+tag`. The associated
//! data names what the secret belongs to (e.g. `token-seed:TOTP1234ABCD`), so a sealed value
//! copied to another row does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;

/// The 256-bit master key.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey(id {})", self.id_hex())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the master key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the master key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the master key {origin} is not valid: expected 32 bytes, base64-encoded (as `tessera` writes it)"
    )]
    Malformed { origin: String },
    #[error(
        "the master key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions { path: String, mode: u32 },
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        if let Err(e) = getrandom::fill(bytes.as_mut()) {
            tracing::error!("random number generator failed: {e}");
        }
        MasterKey(bytes)
    }

    /// Parses the base64 text of a key file or environment variable.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let decoded =
            Zeroizing::new(data_encoding::BASE64.decode(line.as_bytes()).map_err(|_| {
                KeyError::Malformed {
                    origin: origin.into(),
                }
            })?);
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Malformed {
                origin: origin.into(),
            })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE64.encode(self.0.as_ref()))
    }

    /// Reads the key file, or creates it (mode 0600) with a new key when it does not exist.
    /// Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_permissions(path)?;
                Ok((MasterKey::parse(&text, &format!("in {shown}"))?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                write_key_file(path, &key).map_err(|source| KeyError::Create {
                    path: shown,
                    source,
                })?;
                Ok((key, true))
            }
            Err(source) => Err(KeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// The first 4 bytes of SHA-256 of the key: names the key without revealing it.
    pub fn id(&self) -> [u8; 4] {
        let digest = Sha256::digest(self.0.as_ref());
        let mut id = [0u8; 4];
        id.copy_from_slice(&digest[..4]);
        id
    }

    pub fn id_hex(&self) -> String {
        self.id().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn write_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(
        file,
        "# Tessera master key (id {}). It seals OTP seeds and other secrets in the database.\n\
         # Back it up separately from the database; without it the secrets cannot be opened.",
        key.id_hex()
    )?;
    writeln!(file, "{}", key.to_base64().as_str())?;
    file.sync_all()
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Seals and opens secrets with a master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: [u8; 4],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(key id {:02x?})", self.key_id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with another master key (id {0})")]
    OtherKey(String),
    #[error("sealed value failed authentication")]
    Forged,
}

impl Sealer {
    pub fn new(key: &MasterKey) -> Self {
        let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key.0));
        Sealer {
            cipher,
            key_id: key.id(),
        }
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        if let Err(e) = getrandom::fill(&mut nonce) {
            tracing::error!("random number generator failed: {e}");
        }
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ct = self
            .cipher
            .encrypt(&Nonce::from(nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(HEADER + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let key_id = &sealed[1..5];
        if key_id != self.key_id {
            return Err(SealError::OtherKey(
                key_id.iter().map(|b| format!("{b:02x}")).collect(),
            ));
        }
        let nonce = Nonce::try_from(&sealed[5..HEADER]).map_err(|_| SealError::Malformed)?;
        let payload = Payload {
            msg: &sealed[HEADER..],
            aad: context.as_bytes(),
        };
        self.cipher
            .decrypt(&nonce, payload)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let key = MasterKey::generate();
        let s = Sealer::new(&key);
        let sealed = s.seal(b"seed bytes", "token-seed:A");
        assert_ne!(&sealed[HEADER..HEADER + 10], b"seed bytes");
        assert_eq!(
            s.open(&sealed, "token-seed:A").unwrap().as_slice(),
            b"seed bytes"
        );
        assert_eq!(s.open(&sealed, "token-seed:B"), Err(SealError::Forged));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(s.open(&tampered, "token-seed:A"), Err(SealError::Forged));
        assert_eq!(
            s.open(&sealed[..10], "token-seed:A"),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn other_key_is_named() {
        let a = Sealer::new(&MasterKey::generate());
        let b = Sealer::new(&MasterKey::generate());
        let sealed = a.seal(b"x", "c");
        assert!(matches!(b.open(&sealed, "c"), Err(SealError::OtherKey(_))));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (key, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.id(), again.id());
    }

    #[test]
    fn malformed_and_exposed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not base64 at all").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(matches!(
            MasterKey::load_or_create(&path),
            Err(KeyError::Malformed { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, MasterKey::generate().to_base64().as_str()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                MasterKey::load_or_create(&path),
                Err(KeyError::Permissions { .. })
            ));
        }
    }
}
