//! Token files as hardware tokens ship and as privacyIDEA exports them: PSKC (RFC 6030: plain,
//! pre-shared-key AES-128-CBC with an HMAC-SHA1 MAC, PBKDF2 password-based) and privacyIDEA's
//! OATH CSV. Reading a file checks its format only; whether a token is acceptable (digits, step,
//! seed length, serial, owner) is decided where it is stored, under the same rules as an
//! enrolment.

use crate::code::Algorithm;
use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

/// Largest PBKDF2 iteration count read from a file (vendors use thousands; a file asking for
/// billions would hold the server).
const MAX_ITERATIONS: u32 = 1_000_000;

/// HOTP or TOTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Hotp,
    Totp,
}

/// One token read from a file.
pub struct FileToken {
    /// The line of the file where the token's entry starts (1-based).
    pub line: usize,
    pub serial: String,
    pub kind: FileKind,
    pub secret: Zeroizing<Vec<u8>>,
    pub digits: u32,
    pub algorithm: Algorithm,
    /// HOTP: the counter of the next code. TOTP: the first time step that may still be
    /// accepted (0: any), one past the last step privacyIDEA accepted.
    pub counter: u64,
    /// TOTP: seconds per step.
    pub period: u32,
    pub description: Option<String>,
    /// The owner's login name and realm (privacyIDEA's CSV version 2); none: assigned later.
    pub owner: Option<(String, Option<String>)>,
}

impl std::fmt::Debug for FileToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileToken")
            .field("line", &self.line)
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("secret", &"***")
            .field("digits", &self.digits)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// An entry of the file that is not a token that can be imported, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub line: usize,
    pub serial: Option<String>,
    pub reason: String,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct TokenFile {
    pub tokens: Vec<FileToken>,
    pub refused: Vec<Refusal>,
}

/// How the secrets of an encrypted PSKC file are opened.
pub enum PskcKey {
    None,
    /// The pre-shared AES-128 key (16 bytes).
    PreShared(Zeroizing<Vec<u8>>),
    /// The password its PBKDF2 key is derived from.
    Password(Zeroizing<String>),
}

impl std::fmt::Debug for PskcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PskcKey::None => "None",
            PskcKey::PreShared(_) => "PreShared(***)",
            PskcKey::Password(_) => "Password(***)",
        })
    }
}

/// The file is XML (PSKC) rather than CSV.
pub fn is_pskc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
}

/// Reads a PSKC document. An error means the file as a whole cannot be read (not XML, no
/// `KeyContainer`, an encrypted file without its key); entries that cannot be imported are
/// listed in `refused` with their line.
pub fn read_pskc(xml: &str, key: &PskcKey) -> Result<TokenFile, String> {
    let doc = roxmltree::Document::parse(xml.trim_start_matches('\u{feff}'))
        .map_err(|e| format!("not a readable XML document: {e}"))?;
    let root = doc.root_element();
    if !root.has_tag_name_local("KeyContainer") {
        return Err(format!(
            "not a PSKC file: the document is a <{}>, not a <KeyContainer>",
            root.tag_name().name()
        ));
    }
    let line_of = |node: roxmltree::Node| doc.text_pos_at(node.range().start).row as usize;
    let encryption_key = container_key(root, key)?;
    let mac_key = match child(root, "MACMethod") {
        Some(method) => {
            let algorithm = attr(method, "Algorithm").unwrap_or_default();
            if !algorithm.ends_with("hmac-sha1") {
                return Err(format!(
                    "the MAC method {algorithm} is not supported (HMAC-SHA1 is)"
                ));
            }
            match child(method, "MACKey") {
                Some(mac_key) => {
                    let Some(k) = &encryption_key else {
                        return Err(
                            "the file's MAC key is encrypted: give the pre-shared key or the password".into(),
                        );
                    };
                    Some(decrypt(k, mac_key).map_err(|e| format!("the MAC key {e}"))?)
                }
                None => None,
            }
        }
        None => None,
    };
    let mut file = TokenFile::default();
    for package in root
        .children()
        .filter(|n| n.has_tag_name_local("KeyPackage"))
    {
        let line = line_of(package);
        for key_node in package.children().filter(|n| n.has_tag_name_local("Key")) {
            let serial = child(package, "DeviceInfo")
                .and_then(|d| child(d, "SerialNo"))
                .and_then(text)
                .or_else(|| attr(key_node, "Id").map(str::to_string));
            match read_key(
                package,
                key_node,
                encryption_key.as_ref().map(|k| k.as_slice()),
                mac_key.as_ref().map(|k| k.as_slice()),
            ) {
                Ok(mut token) => {
                    token.line = line_of(key_node).max(line);
                    match serial {
                        Some(s) if !s.is_empty() => {
                            token.serial = s;
                            file.tokens.push(token);
                        }
                        _ => file.refused.push(Refusal {
                            line,
                            serial: None,
                            reason: "no serial number (DeviceInfo/SerialNo or Key Id)".into(),
                        }),
                    }
                }
                Err(reason) => file.refused.push(Refusal {
                    line: line_of(key_node),
                    serial,
                    reason,
                }),
            }
        }
    }
    if file.tokens.is_empty() && file.refused.is_empty() {
        return Err("the KeyContainer holds no KeyPackage".into());
    }
    Ok(file)
}

trait LocalName {
    fn has_tag_name_local(&self, name: &str) -> bool;
}

/// Element and attribute names are compared without their namespace and regardless of case:
/// privacyIDEA writes its PSKC export through an HTML serialiser that lowercases them
/// (`<keypackage>`, `algorithm=`), and reads files as leniently.
impl LocalName for roxmltree::Node<'_, '_> {
    fn has_tag_name_local(&self, name: &str) -> bool {
        self.is_element() && self.tag_name().name().eq_ignore_ascii_case(name)
    }
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.name().eq_ignore_ascii_case(name))
        .map(|a| a.value())
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name_local(name))
}

fn descendant<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.descendants()
        .find(|n| n.has_tag_name_local(name) && *n != node)
}

/// An element's text, trimmed; none when empty.
fn text(node: roxmltree::Node) -> Option<String> {
    let t: String = node
        .children()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn base64(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64
        .decode(compact.as_bytes())
        .map_err(|_| "is not valid base64".to_string())
}

/// The container's encryption key: the pre-shared key, or the one PBKDF2 derives from the
/// password with the file's parameters.
fn container_key(
    root: roxmltree::Node,
    key: &PskcKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, String> {
    let Some(enc) = child(root, "EncryptionKey") else {
        return Ok(match key {
            PskcKey::PreShared(k) => Some(k.clone()),
            _ => None,
        });
    };
    if let Some(derived) = child(enc, "DerivedKey") {
        let method = child(derived, "KeyDerivationMethod")
            .ok_or("the DerivedKey names no KeyDerivationMethod")?;
        let algorithm = attr(method, "Algorithm").unwrap_or_default();
        if !algorithm.to_ascii_lowercase().ends_with("pbkdf2") {
            return Err(format!(
                "the key derivation {algorithm} is not supported (PBKDF2 is)"
            ));
        }
        let PskcKey::Password(password) = key else {
            return Err(
                "the file's keys are encrypted with a password: give it (--password)".into(),
            );
        };
        let params =
            descendant(method, "PBKDF2-params").ok_or("the key derivation has no PBKDF2-params")?;
        let salt = descendant(params, "Specified")
            .and_then(text)
            .ok_or("the PBKDF2 parameters have no salt")?;
        let salt = base64(&salt).map_err(|e| format!("the PBKDF2 salt {e}"))?;
        let rounds: u32 = descendant(params, "IterationCount")
            .and_then(text)
            .and_then(|t| t.parse().ok())
            .filter(|n| (1..=MAX_ITERATIONS).contains(n))
            .ok_or(format!(
                "the PBKDF2 iteration count must be a number from 1 to {MAX_ITERATIONS}"
            ))?;
        let length: usize = match descendant(params, "KeyLength").and_then(text) {
            Some(t) => t
                .parse()
                .ok()
                .filter(|n| *n == 16)
                .ok_or("the PBKDF2 key length must be 16 (AES-128)")?,
            None => 16,
        };
        if let Some(prf) = descendant(params, "PRF").and_then(|p| attr(p, "Algorithm"))
            && !prf.to_ascii_lowercase().ends_with("hmac-sha1")
        {
            return Err(format!(
                "the PBKDF2 function {prf} is not supported (HMAC-SHA1 is)"
            ));
        }
        let mut out = Zeroizing::new(vec![0u8; length]);
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password.as_bytes(), &salt, rounds, &mut out);
        return Ok(Some(out));
    }
    match key {
        PskcKey::PreShared(k) => Ok(Some(k.clone())),
        PskcKey::Password(_) => Err(
            "the file's keys are encrypted with a pre-shared key, not a password: give the key (--psk-hex)"
                .into(),
        ),
        PskcKey::None => Err(format!(
            "the file's keys are encrypted with the pre-shared key {}: give it (--psk-hex)",
            descendant(enc, "KeyName")
                .and_then(text)
                .map(|n| format!("\"{n}\""))
                .unwrap_or_default()
        )),
    }
}

/// Decrypts an element holding `EncryptionMethod` (AES-128-CBC) and `CipherData/CipherValue`
/// (IV and cipher text); returns the plain text.
fn decrypt(key: &[u8], node: roxmltree::Node) -> Result<Zeroizing<Vec<u8>>, String> {
    let (iv, ct) = cipher_value(node)?;
    let decryptor = cbc::Decryptor::<aes::Aes128>::new_from_slices(key, &iv)
        .map_err(|_| "cannot be decrypted: the key must be 16 bytes (AES-128)".to_string())?;
    let mut buf = Zeroizing::new(ct);
    let plain = decryptor
        .decrypt_padded::<Pkcs7>(&mut buf)
        .map_err(|_| "cannot be decrypted: wrong key or password".to_string())?;
    Ok(Zeroizing::new(plain.to_vec()))
}

/// The IV and cipher text of an encrypted value, checking its method.
fn cipher_value(node: roxmltree::Node) -> Result<(Vec<u8>, Vec<u8>), String> {
    let method = child(node, "EncryptionMethod")
        .and_then(|m| attr(m, "Algorithm"))
        .unwrap_or_default();
    if !method.to_ascii_lowercase().ends_with("aes128-cbc") {
        return Err(format!(
            "is encrypted with {method}, which is not supported (AES-128-CBC is)"
        ));
    }
    let value = descendant(node, "CipherValue")
        .and_then(text)
        .ok_or("has no CipherValue")?;
    let mut data = base64(&value).map_err(|e| format!("cipher value {e}"))?;
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return Err("has a cipher value of the wrong length for AES-128-CBC".into());
    }
    let ct = data.split_off(16);
    Ok((data, ct))
}

fn read_key(
    package: roxmltree::Node,
    key: roxmltree::Node,
    encryption_key: Option<&[u8]>,
    mac_key: Option<&[u8]>,
) -> Result<FileToken, String> {
    let algorithm_uri = attr(key, "Algorithm").unwrap_or_default();
    let kind = match algorithm_uri
        .rsplit([':', '#'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "hotp" => FileKind::Hotp,
        "totp" => FileKind::Totp,
        other => {
            return Err(format!(
                "not an HOTP or TOTP key ({})",
                if other.is_empty() {
                    algorithm_uri
                } else {
                    other
                }
            ));
        }
    };
    let params = child(key, "AlgorithmParameters");
    let format = params.and_then(|p| child(p, "ResponseFormat"));
    if let Some(encoding) = format.and_then(|f| attr(f, "Encoding"))
        && !encoding.eq_ignore_ascii_case("DECIMAL")
    {
        return Err(format!(
            "codes in {encoding} are not supported (DECIMAL are)"
        ));
    }
    let digits = match format.and_then(|f| attr(f, "Length")) {
        Some(l) => l
            .trim()
            .parse()
            .map_err(|_| format!("the code length {l:?} is not a number"))?,
        None => 6,
    };
    // The hash: the Suite's text, or privacyIDEA's `hashalgo` attribute; SHA-1 when neither.
    let suite = params.and_then(|p| child(p, "Suite"));
    let hash = suite
        .and_then(text)
        .or_else(|| suite.and_then(|s| attr(s, "hashalgo").map(str::to_string)))
        .unwrap_or_else(|| "sha1".into());
    let algorithm = hash_of(&hash)?;

    let data = child(key, "Data").ok_or("the key has no Data")?;
    let secret = child(data, "Secret").ok_or("the key has no Secret")?;
    let seed = if let Some(plain) = child(secret, "PlainValue") {
        Zeroizing::new(
            base64(&text(plain).unwrap_or_default()).map_err(|e| format!("the secret {e}"))?,
        )
    } else if let Some(encrypted) = child(secret, "EncryptedValue") {
        let Some(k) = encryption_key else {
            return Err(
                "the secret is encrypted and the file names no key: give the pre-shared key or the password".into(),
            );
        };
        let (iv, ct) = cipher_value(encrypted).map_err(|e| format!("the secret {e}"))?;
        // The MAC covers the IV and the cipher text; it is checked before decrypting.
        let mac = descendant(data, "ValueMAC")
            .and_then(text)
            .ok_or("the encrypted secret has no ValueMAC: it cannot be checked")?;
        let mac = base64(&mac).map_err(|e| format!("the ValueMAC {e}"))?;
        let Some(mac_key) = mac_key else {
            return Err("the file has a ValueMAC but no MACMethod/MACKey".into());
        };
        let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(mac_key)
            .map_err(|_| "the MAC key cannot be used".to_string())?;
        m.update(&iv);
        m.update(&ct);
        m.verify_slice(&mac).map_err(|_| {
            "the MAC does not match: wrong key or password, or the file was changed".to_string()
        })?;
        decrypt(k, encrypted).map_err(|e| format!("the secret {e}"))?
    } else {
        return Err("the Secret has neither PlainValue nor EncryptedValue".into());
    };
    let plain_number = |name: &str| -> Result<Option<u64>, String> {
        match child(data, name)
            .and_then(|n| child(n, "PlainValue"))
            .and_then(text)
        {
            Some(t) => t
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name} {t:?} is not a whole number")),
            None => Ok(None),
        }
    };
    let counter = plain_number("Counter")?.unwrap_or(0);
    let period = match (kind, plain_number("TimeInterval")?) {
        (FileKind::Totp, Some(p)) => u32::try_from(p).map_err(|_| "TimeInterval is too large")?,
        _ => 30,
    };
    if kind == FileKind::Totp && plain_number("Time")?.is_some_and(|t| t != 0) {
        return Err("a TOTP start time (Time) other than 0 is not supported".into());
    }
    let description = child(package, "DeviceInfo")
        .and_then(|d| child(d, "Manufacturer"))
        .and_then(text)
        .or_else(|| child(key, "Issuer").and_then(text));
    Ok(FileToken {
        line: 0,
        serial: String::new(),
        kind,
        secret: seed,
        digits,
        algorithm,
        counter: match kind {
            FileKind::Hotp => counter,
            // privacyIDEA keeps the last accepted step of a TOTP token as its counter.
            FileKind::Totp if counter > 0 => counter.saturating_add(1),
            FileKind::Totp => 0,
        },
        period,
        description,
        owner: None,
    })
}

fn hash_of(name: &str) -> Result<Algorithm, String> {
    let n = name.to_ascii_lowercase().replace(['-', '_'], "");
    if n.ends_with("sha512") {
        Ok(Algorithm::Sha512)
    } else if n.ends_with("sha256") {
        Ok(Algorithm::Sha256)
    } else if n.ends_with("sha1") {
        Ok(Algorithm::Sha1)
    } else {
        Err(format!(
            "the hash {name} is not supported (SHA1, SHA256, SHA512 are)"
        ))
    }
}

/// Reads privacyIDEA's OATH CSV: `serial, key (hex), type, digits, counter (HOTP) or step
/// (TOTP)`, `#` comments, and with `# version: 2` on the first line three leading columns
/// `user, resolver, realm`. The hash follows from the key's length as privacyIDEA decides it
/// (64 hex digits: SHA-256, 128: SHA-512, otherwise SHA-1).
pub fn read_csv(text: &str) -> TokenFile {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text.lines().enumerate().peekable();
    let version2 = lines.peek().is_some_and(|(_, first)| {
        let l = first.trim_start_matches('#').trim();
        first.starts_with('#') && l.strip_prefix("version:").is_some_and(|v| v.trim() == "2")
    });
    let mut file = TokenFile::default();
    for (i, line) in lines {
        let line_no = i + 1;
        if line.starts_with('#') {
            continue;
        }
        let mut values: Vec<&str> = line.split(',').map(str::trim).collect();
        if values.len() <= 1 && values.first().is_none_or(|v| v.is_empty()) {
            continue;
        }
        let owner = if version2 {
            if values.len() < 3 {
                file.refused.push(Refusal {
                    line: line_no,
                    serial: None,
                    reason: "a version 2 line starts with user, resolver and realm".into(),
                });
                continue;
            }
            let user = values.remove(0);
            let _resolver = values.remove(0);
            let realm = values.remove(0);
            (!user.is_empty()).then(|| {
                (
                    user.to_string(),
                    (!realm.is_empty()).then(|| realm.to_string()),
                )
            })
        } else {
            None
        };
        match csv_token(&values) {
            Ok(mut token) => {
                token.line = line_no;
                token.owner = owner;
                file.tokens.push(token);
            }
            Err(reason) => file.refused.push(Refusal {
                line: line_no,
                serial: values
                    .first()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.to_string()),
                reason,
            }),
        }
    }
    file
}

fn csv_token(values: &[&str]) -> Result<FileToken, String> {
    let serial = values.first().copied().unwrap_or_default();
    if serial.is_empty() {
        return Err("no serial in the first column".into());
    }
    let key = values
        .get(1)
        .copied()
        .filter(|k| !k.is_empty())
        .ok_or("no key in the second column")?;
    let kind = match values
        .get(2)
        .map(|t| t.to_ascii_lowercase())
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or("hotp")
    {
        "hotp" => FileKind::Hotp,
        "totp" => FileKind::Totp,
        other => {
            return Err(format!(
                "the token type {other} cannot be imported (hotp and totp can)"
            ));
        }
    };
    let algorithm = match key.len() {
        64 => Algorithm::Sha256,
        128 => Algorithm::Sha512,
        56 | 96 => return Err("SHA-224 and SHA-384 keys are not supported".into()),
        _ => Algorithm::Sha1,
    };
    let secret = Zeroizing::new(
        HEXLOWER_PERMISSIVE
            .decode(key.as_bytes())
            .map_err(|_| "the key is not hexadecimal".to_string())?,
    );
    let digits = match values.get(3).filter(|d| !d.is_empty()) {
        Some(d) => d
            .parse()
            .map_err(|_| format!("the code length {d:?} is not a number"))?,
        None => 6,
    };
    let fifth = match values.get(4).filter(|v| !v.is_empty()) {
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| format!("the fifth column {v:?} is not a whole number"))?,
        ),
        None => None,
    };
    let (counter, period) = match kind {
        FileKind::Hotp => (fifth.unwrap_or(0), 30),
        FileKind::Totp => (
            0,
            u32::try_from(fifth.unwrap_or(30)).map_err(|_| "the time step is too large")?,
        ),
    };
    Ok(FileToken {
        line: 0,
        serial: serial.to_string(),
        kind,
        secret,
        digits,
        algorithm,
        counter,
        period,
        description: None,
        owner: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_and_refusals() {
        let f = read_csv(
            "# a comment\n\
             OATH1, 3132333435363738393031323334353637383930, hotp, 6, 7\n\
             \n\
             TOTP1, 3132333435363738393031323334353637383930313233343536373839303132, totp, 8, 60\n\
             BAD1, zz, hotp\n\
             OCRA1, 3132, ocra, OCRA-1:HOTP-SHA1-6:QN08\n\
             PLAIN, 3132333435363738393031323334353637383930\n",
        );
        assert_eq!(f.tokens.len(), 3, "{f:?}");
        let t = &f.tokens[0];
        assert_eq!(
            (t.line, t.serial.as_str(), t.kind, t.digits, t.counter),
            (2, "OATH1", FileKind::Hotp, 6, 7)
        );
        assert_eq!(t.secret.as_slice(), b"12345678901234567890");
        let t = &f.tokens[1];
        assert_eq!(
            (t.line, t.kind, t.digits, t.period),
            (4, FileKind::Totp, 8, 60)
        );
        assert_eq!(t.algorithm, Algorithm::Sha256);
        assert_eq!((f.tokens[2].kind, f.tokens[2].digits), (FileKind::Hotp, 6));
        assert_eq!(
            f.refused
                .iter()
                .map(|r| (r.line, r.serial.clone().unwrap_or_default()))
                .collect::<Vec<_>>(),
            [(5, "BAD1".to_string()), (6, "OCRA1".to_string())]
        );
        assert!(f.refused[1].reason.contains("ocra"));
    }

    #[test]
    fn csv_version_2_names_owners() {
        let f = read_csv(
            "# version: 2\n\
             alice, ldap1, corp, S1, 3132333435363738393031323334353637383930, totp, 6, 30\n\
             , , , S2, 3132333435363738393031323334353637383930\n",
        );
        assert_eq!(
            f.tokens[0].owner,
            Some(("alice".to_string(), Some("corp".to_string())))
        );
        assert_eq!(f.tokens[1].owner, None);
        assert_eq!(f.tokens[1].serial, "S2");
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/pskc/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn psk() -> PskcKey {
        PskcKey::PreShared(Zeroizing::new(
            HEXLOWER_PERMISSIVE
                .decode(b"12345678901234567890123456789012")
                .unwrap(),
        ))
    }

    #[test]
    fn rfc6030_plain_figures() {
        let f = read_pskc(&fixture("rfc6030-figure2.xml"), &PskcKey::None).unwrap();
        assert_eq!(f.tokens.len(), 1);
        let t = &f.tokens[0];
        assert_eq!(
            (t.serial.as_str(), t.kind, t.digits),
            ("12345678", FileKind::Hotp, 6)
        );
        assert_eq!(t.secret.as_slice(), b"1234");
        assert_eq!(t.description.as_deref(), Some("Issuer-A"));

        // Figure 5: the HOTP key (8 digits, counter 0) and the PIN, which is no OTP key.
        let f = read_pskc(&fixture("rfc6030-figure5.xml"), &PskcKey::None).unwrap();
        assert_eq!(f.tokens.len(), 1);
        let t = &f.tokens[0];
        assert_eq!(
            (t.serial.as_str(), t.digits, t.counter),
            ("987654321", 8, 0)
        );
        assert_eq!(t.secret.as_slice(), b"12345678901234567890");
        assert_eq!(f.refused.len(), 1);
        assert!(f.refused[0].reason.contains("pin"), "{:?}", f.refused);
        assert!(f.refused[0].line > t.line);

        let f = read_pskc(&fixture("rfc6030-figure10.xml"), &PskcKey::None).unwrap();
        let serials: Vec<&str> = f.tokens.iter().map(|t| t.serial.as_str()).collect();
        assert_eq!(serials, ["654321", "123456", "9999999", "9999999"]);
    }

    #[test]
    fn rfc6030_encrypted_figures() {
        // Figure 6: the pre-shared key; the MAC is checked.
        let f = read_pskc(&fixture("rfc6030-figure6.xml"), &psk()).unwrap();
        assert_eq!(f.refused, []);
        assert_eq!(f.tokens[0].secret.as_slice(), b"12345678901234567890");
        assert_eq!(f.tokens[0].digits, 8);
        // Without the key, the file cannot be read; with another, nothing is imported.
        let err = read_pskc(&fixture("rfc6030-figure6.xml"), &PskcKey::None).unwrap_err();
        assert!(
            err.contains("Pre-shared-key") && err.contains("--psk-hex"),
            "{err}"
        );
        let other = PskcKey::PreShared(Zeroizing::new(vec![7u8; 16]));
        match read_pskc(&fixture("rfc6030-figure6.xml"), &other) {
            Err(e) => assert!(e.contains("wrong key"), "{e}"),
            Ok(f) => {
                assert!(f.tokens.is_empty());
                assert!(f.refused[0].reason.contains("MAC"), "{:?}", f.refused);
            }
        }
        // A changed cipher text fails its MAC.
        let changed = fixture("rfc6030-figure6.xml").replace(
            "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGv",
            "AAECAwQFBgcICQoLDA0OD+cIHItlB3Wra1DUpxVvOx2lef1VmNPCMl8jwZqIUqGw",
        );
        let f = read_pskc(&changed, &psk()).unwrap();
        assert!(f.tokens.is_empty());
        assert!(f.refused[0].reason.contains("MAC does not match"));

        // Figure 7: PBKDF2 from the password.
        let qwerty = PskcKey::Password(Zeroizing::new("qwerty".into()));
        let f = read_pskc(&fixture("rfc6030-figure7.xml"), &qwerty).unwrap();
        assert_eq!(f.refused, []);
        assert_eq!(f.tokens[0].secret.as_slice(), b"12345678901234567890");
        assert_eq!(f.tokens[0].serial, "987654321");
        let wrong = PskcKey::Password(Zeroizing::new("azerty".into()));
        match read_pskc(&fixture("rfc6030-figure7.xml"), &wrong) {
            Err(e) => assert!(e.contains("wrong key"), "{e}"),
            Ok(f) => assert!(f.tokens.is_empty()),
        }
        let err = read_pskc(&fixture("rfc6030-figure7.xml"), &PskcKey::None).unwrap_err();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn pskc_refuses_junk_as_a_whole() {
        assert!(
            read_pskc("<html/>", &PskcKey::None)
                .unwrap_err()
                .contains("KeyContainer")
        );
        assert!(
            read_pskc("<KeyContainer", &PskcKey::None)
                .unwrap_err()
                .contains("XML")
        );
    }
}
