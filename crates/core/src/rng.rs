//! Randomness as a port, with the helpers the engine needs (transaction ids, serials, tokens).

use std::fmt::Write;

/// A source of cryptographically secure random bytes.
pub trait Rng: Send + Sync + std::fmt::Debug {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    #[allow(clippy::panic)]
    fn fill(&self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // Without an entropy source no secret can be made safely; this cannot be recovered
            // from and does not happen on any supported platform.
            panic!("operating system random number generator failed: {e}");
        }
    }
}

/// `n` random bytes.
pub fn random_bytes(rng: &dyn Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// `n` uniformly random decimal digits (rejection sampling, no modulo bias).
pub fn random_digits(rng: &dyn Rng, n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        rng.fill(&mut buf);
        for b in buf {
            if b < 250 && out.len() < n {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    out
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(rng: &dyn Rng, n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for b in random_bytes(rng, n) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A 256-bit bearer token, URL-safe base64 without padding.
pub fn random_token(rng: &dyn Rng) -> String {
    data_encoding::BASE64URL_NOPAD.encode(&random_bytes(rng, 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_digits_of_the_right_length() {
        for n in [1, 20, 100] {
            let d = random_digits(&OsRng, n);
            assert_eq!(d.len(), n);
            assert!(d.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn hex_and_tokens_have_expected_shape() {
        assert_eq!(random_hex(&OsRng, 4).len(), 8);
        assert_eq!(random_token(&OsRng).len(), 43);
        assert_ne!(random_token(&OsRng), random_token(&OsRng));
    }
}
