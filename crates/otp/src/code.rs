//! Code generation and window search.

use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

/// The HMAC hash an OATH token uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs and in configuration (`SHA1`, `SHA256`, `SHA512`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Parses `SHA1`/`sha1`/`SHA-1` and the same for 256 and 512.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Number of digits of a code: 6 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Digits {
    Six,
    Eight,
}

impl Digits {
    pub fn get(self) -> usize {
        match self {
            Digits::Six => 6,
            Digits::Eight => 8,
        }
    }

    pub fn from_len(n: u64) -> Option<Self> {
        match n {
            6 => Some(Digits::Six),
            8 => Some(Digits::Eight),
            _ => None,
        }
    }

    fn modulus(self) -> u32 {
        match self {
            Digits::Six => 1_000_000,
            Digits::Eight => 100_000_000,
        }
    }
}

/// An OATH key with its algorithm and code length: everything needed to compute codes.
#[derive(Clone)]
pub struct OtpKey {
    secret: Vec<u8>,
    pub algorithm: Algorithm,
    pub digits: Digits,
}

impl std::fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpKey")
            .field("secret", &"***")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish()
    }
}

impl Drop for OtpKey {
    fn drop(&mut self) {
        // Best-effort wipe of the seed; the allocator may have copies from earlier reallocations.
        for b in self.secret.iter_mut() {
            *b = 0;
        }
    }
}

impl OtpKey {
    pub fn new(secret: Vec<u8>, algorithm: Algorithm, digits: Digits) -> Self {
        OtpKey {
            secret,
            algorithm,
            digits,
        }
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The code for `counter`, zero-padded to the key's length.
    pub fn code(&self, counter: u64) -> String {
        let value = hotp(&self.secret, counter, self.digits, self.algorithm);
        format!("{value:0width$}", width = self.digits.get())
    }

    /// Searches counters `from ..= to` for `otp` and returns the first that matches. Every counter
    /// in the range is computed and compared in constant time, so the time taken does not depend
    /// on where (or whether) the code matched.
    pub fn find(&self, otp: &str, from: u64, to: u64) -> Option<u64> {
        if otp.len() != self.digits.get() || !otp.bytes().all(|b| b.is_ascii_digit()) || to < from {
            return None;
        }
        let mut found = None;
        let mut counter = from;
        loop {
            let candidate = self.code(counter);
            if bool::from(candidate.as_bytes().ct_eq(otp.as_bytes())) && found.is_none() {
                found = Some(counter);
            }
            if counter == to {
                break;
            }
            counter += 1;
        }
        found
    }

    /// Resynchronisation: finds counter `c` in `from ..= to` such that `first` is the code of `c`
    /// and `second` the code of `c + 1`. Returns `c + 1`, the counter of the second code.
    pub fn find_consecutive(&self, first: &str, second: &str, from: u64, to: u64) -> Option<u64> {
        let c = self.find(first, from, to)?;
        let next = c.checked_add(1)?;
        self.find(second, next, next)
    }
}

/// RFC 4226 HOTP value (before zero padding) for `counter`.
pub fn hotp(secret: &[u8], counter: u64, digits: Digits, algorithm: Algorithm) -> u32 {
    let msg = counter.to_be_bytes();
    let mac: Vec<u8> = match algorithm {
        Algorithm::Sha1 => mac_bytes::<sha1::Sha1>(secret, &msg),
        Algorithm::Sha256 => mac_bytes::<sha2::Sha256>(secret, &msg),
        Algorithm::Sha512 => mac_bytes::<sha2::Sha512>(secret, &msg),
    };
    // Dynamic truncation (RFC 4226 §5.3). The MAC is at least 20 bytes, so the offset (0..=15)
    // plus 4 is always in range.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let bytes = [
        mac.get(offset).copied().unwrap_or(0) & 0x7f,
        mac.get(offset + 1).copied().unwrap_or(0),
        mac.get(offset + 2).copied().unwrap_or(0),
        mac.get(offset + 3).copied().unwrap_or(0),
    ];
    u32::from_be_bytes(bytes) % digits.modulus()
}

fn mac_bytes<D>(secret: &[u8], msg: &[u8]) -> Vec<u8>
where
    Hmac<D>: KeyInit + Mac,
    D: hmac::EagerHash,
{
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key if it did.
    let mut mac = match <Hmac<D> as KeyInit>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => <Hmac<D> as KeyInit>::new(&Default::default()),
    };
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Time step parameters of a TOTP token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpParams {
    /// Step in seconds (30 or 60 in practice).
    pub period: u64,
    /// Unix time at which counting starts (RFC 6238 T0), 0 for every common app.
    pub t0: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams { period: 30, t0: 0 }
    }
}

/// The TOTP counter (time step number) at Unix time `unix_secs`.
pub fn totp_counter(unix_secs: u64, params: TotpParams) -> u64 {
    let period = params.period.max(1);
    unix_secs.saturating_sub(params.t0) / period
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4226_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_hotp_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(key.code(counter as u64), *code, "counter {counter}");
        }
    }

    #[test]
    fn rfc6238_totp_vectors() {
        let sha1 = b"12345678901234567890".to_vec();
        let sha256 = b"12345678901234567890123456789012".to_vec();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".to_vec();
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        let k1 = OtpKey::new(sha1, Algorithm::Sha1, Digits::Eight);
        let k256 = OtpKey::new(sha256, Algorithm::Sha256, Digits::Eight);
        let k512 = OtpKey::new(sha512, Algorithm::Sha512, Digits::Eight);
        for (t, c1, c256, c512) in table {
            let counter = totp_counter(t, TotpParams::default());
            assert_eq!(k1.code(counter), c1, "sha1 t={t}");
            assert_eq!(k256.code(counter), c256, "sha256 t={t}");
            assert_eq!(k512.code(counter), c512, "sha512 t={t}");
        }
    }

    #[test]
    fn find_searches_inclusive_window() {
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        assert_eq!(key.find("969429", 0, 9), Some(3));
        assert_eq!(key.find("969429", 0, 2), None);
        assert_eq!(key.find("969429", 3, 3), Some(3));
        assert_eq!(key.find("969429", 4, 9), None);
    }

    #[test]
    fn find_rejects_malformed_codes() {
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        assert_eq!(key.find("75522", 0, 9), None);
        assert_eq!(key.find("7552244", 0, 9), None);
        assert_eq!(key.find("75522a", 0, 9), None);
        assert_eq!(key.find("", 0, 9), None);
        assert_eq!(key.find("755224", 5, 4), None);
    }

    #[test]
    fn find_at_counter_limit_does_not_overflow() {
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        let code = key.code(u64::MAX);
        assert_eq!(key.find(&code, u64::MAX - 2, u64::MAX), Some(u64::MAX));
        assert_eq!(
            key.find_consecutive(&code, "000000", u64::MAX - 1, u64::MAX),
            None
        );
    }

    #[test]
    fn consecutive_codes_resync() {
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        assert_eq!(key.find_consecutive("338314", "254676", 0, 9), Some(5));
        assert_eq!(key.find_consecutive("338314", "287922", 0, 9), None);
    }

    #[test]
    fn totp_counter_uses_period_and_t0() {
        let p = TotpParams { period: 60, t0: 0 };
        assert_eq!(totp_counter(119, p), 1);
        assert_eq!(totp_counter(120, p), 2);
        let p = TotpParams {
            period: 30,
            t0: 100,
        };
        assert_eq!(totp_counter(50, p), 0);
        assert_eq!(totp_counter(130, p), 1);
    }

    #[test]
    fn debug_hides_secret() {
        let key = OtpKey::new(RFC4226_KEY.to_vec(), Algorithm::Sha1, Digits::Six);
        assert!(!format!("{key:?}").contains("1234"));
    }
}
