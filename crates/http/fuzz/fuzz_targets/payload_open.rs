//! The opener of encrypted payloads (seed 003's API encryption): any body sent to an endpoint
//! that takes only sealed payloads. Nothing may panic; what Tessera's own sealing makes opens
//! to exactly what was sealed.
#![no_main]

use hpke::{Deserializable, Kem, Serializable};
use libfuzzer_sys::fuzz_target;

type X25519 = hpke::kem::X25519HkdfSha256;

/// A fixed private key (any 32 bytes are an X25519 key).
const KEY: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let _ = tessera_http::payload::open(&KEY, data);
    // Round trip: the fuzzer's bytes as the body, sealed to the key's public half.
    let Ok(sk) = <X25519 as Kem>::PrivateKey::from_bytes(&KEY) else {
        return;
    };
    let pk = data_encoding::BASE64.encode(&X25519::sk_to_pk(&sk).to_bytes());
    let body = String::from_utf8_lossy(data).into_owned();
    let sealed = tessera_http::payload::seal(&pk, &body, 1_800_000_000, "a-nonce-of-16-chars")
        .expect("sealing works");
    let opened = tessera_http::payload::open(&KEY, sealed.as_bytes()).expect("what we seal opens");
    assert_eq!(opened.body, body);
    assert_eq!(opened.ts, 1_800_000_000);
    assert_eq!(opened.nonce, "a-nonce-of-16-chars");
});
