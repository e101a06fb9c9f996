//! Codes agree with oathtool, an independent implementation, for every algorithm, length and
//! step the authenticators support.

#![allow(clippy::unwrap_used)]

use tessera_otp::{Algorithm, Digits, OtpKey, TotpParams, decode_base32, totp_counter};
use tessera_testkit::{oathtool_hotp, oathtool_totp};

const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

#[test]
fn totp_matches_oathtool() {
    let secret = decode_base32(SEED).unwrap();
    for (alg, name) in [
        (Algorithm::Sha1, "sha1"),
        (Algorithm::Sha256, "sha256"),
        (Algorithm::Sha512, "sha512"),
    ] {
        for digits in [Digits::Six, Digits::Eight] {
            for period in [30u32, 60] {
                let key = OtpKey::new(secret.clone(), alg, digits);
                for t in [59i64, 1_111_111_109, 1_700_000_000, 2_000_000_000] {
                    let ours = key.code(totp_counter(
                        t as u64,
                        TotpParams {
                            period: u64::from(period),
                            t0: 0,
                        },
                    ));
                    let theirs = oathtool_totp(SEED, t, digits.get() as u32, period, name);
                    assert_eq!(ours, theirs, "{name} {digits:?} {period}s at {t}");
                }
            }
        }
    }
}

#[test]
fn hotp_matches_oathtool() {
    let secret = decode_base32(SEED).unwrap();
    let key = OtpKey::new(secret, Algorithm::Sha1, Digits::Six);
    for c in [0u64, 1, 9, 1000, 123_456_789] {
        assert_eq!(key.code(c), oathtool_hotp(SEED, c, 6), "counter {c}");
    }
}
