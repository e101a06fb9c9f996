//! `otpauth://` enrollment URIs (the Google Authenticator key URI format) and base32 seeds.

use crate::code::{Algorithm, Digits};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Characters left as they are in labels and parameters; everything else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A base32 seed that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the secret is not valid base32 (letters A-Z and digits 2-7, optionally with = padding)")]
pub struct Base32Error;

/// Encodes a seed as unpadded RFC 4648 base32, as authenticator apps expect.
pub fn encode_base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// Decodes base32 the way users type it: case-insensitive, spaces and dashes ignored, padding
/// optional.
pub fn decode_base32(text: &str) -> Result<Vec<u8>, Base32Error> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let trimmed = cleaned.trim_end_matches('=');
    if trimmed.is_empty() {
        return Err(Base32Error);
    }
    data_encoding::BASE32_NOPAD
        .decode(trimmed.as_bytes())
        .map_err(|_| Base32Error)
}

/// HOTP (event based) or TOTP (time based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtpKind {
    Hotp { counter: u64 },
    Totp { period: u64 },
}

/// The fields of an `otpauth://` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpAuthUri {
    pub kind: OtpKind,
    /// Shown by the app as the issuer, e.g. the organisation's name.
    pub issuer: String,
    /// Shown by the app as the account, e.g. `alice@example`.
    pub account: String,
    pub secret: Vec<u8>,
    pub algorithm: Algorithm,
    pub digits: Digits,
}

impl std::fmt::Debug for OtpAuthUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpAuthUri")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("account", &self.account)
            .field("secret", &"***")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish()
    }
}

impl OtpAuthUri {
    /// Renders the URI: `otpauth://totp/Issuer:account?secret=…&issuer=…&algorithm=…&digits=…&period=…`.
    pub fn to_uri(&self) -> String {
        let kind = match self.kind {
            OtpKind::Hotp { .. } => "hotp",
            OtpKind::Totp { .. } => "totp",
        };
        let issuer = utf8_percent_encode(&self.issuer, COMPONENT).to_string();
        let account = utf8_percent_encode(&self.account, COMPONENT).to_string();
        let label = if self.issuer.is_empty() {
            account
        } else {
            format!("{issuer}:{account}")
        };
        let mut uri = format!(
            "otpauth://{kind}/{label}?secret={}&algorithm={}&digits={}",
            encode_base32(&self.secret),
            self.algorithm.as_str(),
            self.digits.get()
        );
        if !self.issuer.is_empty() {
            uri.push_str("&issuer=");
            uri.push_str(&issuer);
        }
        match self.kind {
            OtpKind::Hotp { counter } => uri.push_str(&format!("&counter={counter}")),
            OtpKind::Totp { period } => uri.push_str(&format!("&period={period}")),
        }
        uri
    }

    /// Parses an `otpauth://` URI, e.g. one exported from another server.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("otpauth://")?;
        let (kind, rest) = rest.split_once('/')?;
        let (label, query) = rest.split_once('?').unwrap_or((rest, ""));
        let label = percent_decode_str(label).decode_utf8().ok()?.into_owned();
        let (label_issuer, account) = match label.split_once(':') {
            Some((i, a)) => (i.to_string(), a.trim_start().to_string()),
            None => (String::new(), label),
        };
        let mut secret = None;
        let mut issuer = label_issuer;
        let mut algorithm = Algorithm::Sha1;
        let mut digits = Digits::Six;
        let mut counter = 0u64;
        let mut period = 30u64;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode_str(v).decode_utf8().ok()?.into_owned();
            match k {
                "secret" => secret = Some(decode_base32(&v).ok()?),
                "issuer" => issuer = v,
                "algorithm" => algorithm = Algorithm::parse(&v)?,
                "digits" => digits = Digits::from_len(v.parse().ok()?)?,
                "counter" => counter = v.parse().ok()?,
                "period" => period = v.parse().ok()?,
                _ => {}
            }
        }
        let kind = match kind {
            "hotp" => OtpKind::Hotp { counter },
            "totp" => OtpKind::Totp { period },
            _ => return None,
        };
        Some(OtpAuthUri {
            kind,
            issuer,
            account,
            secret: secret?,
            algorithm,
            digits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trip_and_lenient_input() {
        let secret = b"12345678901234567890";
        let text = encode_base32(secret);
        assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(decode_base32(&text).as_deref(), Ok(&secret[..]));
        assert_eq!(
            decode_base32("gezd gnbv-gy3t qojq gezd gnbv gy3t qojq").as_deref(),
            Ok(&secret[..])
        );
        assert_eq!(
            decode_base32("GEZDGNBVGY3TQOJQ======"),
            Ok(b"1234567890".to_vec())
        );
        assert_eq!(decode_base32("not base32!"), Err(Base32Error));
        assert_eq!(decode_base32(""), Err(Base32Error));
    }

    #[test]
    fn uri_round_trip() {
        let uri = OtpAuthUri {
            kind: OtpKind::Totp { period: 60 },
            issuer: "ACME Corp".into(),
            account: "alice@example".into(),
            secret: b"12345678901234567890".to_vec(),
            algorithm: Algorithm::Sha256,
            digits: Digits::Eight,
        };
        let text = uri.to_uri();
        assert_eq!(
            text,
            "otpauth://totp/ACME%20Corp:alice%40example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &algorithm=SHA256&digits=8&issuer=ACME%20Corp&period=60"
        );
        assert_eq!(OtpAuthUri::parse(&text), Some(uri));
    }

    #[test]
    fn hotp_uri_carries_counter() {
        let uri = OtpAuthUri {
            kind: OtpKind::Hotp { counter: 7 },
            issuer: String::new(),
            account: "bob".into(),
            secret: vec![1, 2, 3, 4, 5],
            algorithm: Algorithm::Sha1,
            digits: Digits::Six,
        };
        let text = uri.to_uri();
        assert!(text.starts_with("otpauth://hotp/bob?"));
        assert!(text.ends_with("&counter=7"));
        assert_eq!(OtpAuthUri::parse(&text), Some(uri));
    }

    #[test]
    fn parse_rejects_bad_uris() {
        assert_eq!(OtpAuthUri::parse("http://totp/x?secret=AAAA"), None);
        assert_eq!(OtpAuthUri::parse("otpauth://totp/x"), None);
        assert_eq!(OtpAuthUri::parse("otpauth://xotp/x?secret=GEZDGNBV"), None);
        assert_eq!(
            OtpAuthUri::parse("otpauth://totp/x?secret=GEZDGNBV&digits=7"),
            None
        );
        assert_eq!(
            OtpAuthUri::parse("otpauth://totp/x?secret=GEZDGNBV&algorithm=MD5"),
            None
        );
    }
}
