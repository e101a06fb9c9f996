//! Property tests: what the codec writes, it reads back unchanged; what it signs, it verifies;
//! and no input makes the decoder or the verifiers panic.

use proptest::prelude::*;
use tessera_radius_proto::{
    Attribute, Code, Packet, RequestCheck, encode_reply, encode_request, hide_password,
    unhide_password, verify_reply, verify_request,
};

fn attribute() -> impl Strategy<Value = Attribute> {
    (1u8..=255, proptest::collection::vec(any::<u8>(), 0..=60))
        .prop_filter("no Message-Authenticator", |(t, _)| *t != 80)
        .prop_map(|(t, v)| Attribute::new(t, v))
}

fn packet() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(attribute(), 0..20),
    )
        .prop_map(|(code, id, auth, attributes)| Packet {
            code: Code(code),
            identifier: id,
            authenticator: auth,
            attributes,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_decode_is_identity(p in packet()) {
        let raw = p.encode().unwrap();
        prop_assert_eq!(Packet::decode(&raw).unwrap(), p);
    }

    #[test]
    fn hidden_passwords_come_back(
        pw in proptest::collection::vec(1u8..=255, 0..=128),
        secret in proptest::collection::vec(any::<u8>(), 1..40),
        auth in any::<[u8; 16]>(),
    ) {
        let hidden = hide_password(&pw, &secret, &auth).unwrap();
        prop_assert_eq!(hidden.len() % 16, 0);
        prop_assert_eq!(unhide_password(&hidden, &secret, &auth).unwrap(), pw);
    }

    #[test]
    fn signed_requests_verify_and_tampering_is_caught(
        attrs in proptest::collection::vec(attribute(), 0..10),
        secret in proptest::collection::vec(any::<u8>(), 1..40),
        auth in any::<[u8; 16]>(),
        accounting in any::<bool>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let code = if accounting { Code::ACCOUNTING_REQUEST } else { Code::ACCESS_REQUEST };
        let raw = encode_request(code, 1, &auth, &attrs, &secret, true).unwrap();
        prop_assert_eq!(verify_request(&raw, &secret).unwrap(), RequestCheck::Valid);
        // Flip one bit anywhere after the length field: it must not verify any more.
        let mut bad = raw.clone();
        let i = 4 + flip.index(raw.len() - 4);
        bad[i] ^= 0x01;
        if let Ok(check) = verify_request(&bad, &secret) {
            prop_assert_ne!(check, RequestCheck::Valid);
        }
    }

    #[test]
    fn signed_replies_verify(
        attrs in proptest::collection::vec(attribute(), 0..10),
        secret in proptest::collection::vec(any::<u8>(), 1..40),
        req_auth in any::<[u8; 16]>(),
    ) {
        let raw = encode_reply(Code::ACCESS_ACCEPT, 3, &req_auth, &attrs, &secret).unwrap();
        let p = verify_reply(&raw, &req_auth, &secret, true).unwrap();
        prop_assert_eq!(p.attributes[0].typ, 80);
        prop_assert_eq!(&p.attributes[1..], &attrs[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Packet::decode(&bytes);
        let _ = verify_request(&bytes, b"secret");
        let _ = verify_reply(&bytes, &[0; 16], b"secret", true);
    }
}
