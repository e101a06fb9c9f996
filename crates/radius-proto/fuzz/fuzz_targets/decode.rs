//! Feeds arbitrary datagrams to everything the RADIUS server does with an untrusted packet
//! before it knows the sender: decoding, authenticator checks, password revealing, dictionary
//! formatting. None of it may panic; whatever decodes must encode back to the same octets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_radius_proto::{Dictionary, Packet, unhide_password, verify_reply, verify_request};

fuzz_target!(|data: &[u8]| {
    let _ = verify_request(data, b"fuzz-secret");
    let _ = verify_reply(data, &[0u8; 16], b"fuzz-secret", false);
    if let Ok(p) = Packet::decode(data) {
        if let Some(pw) = p.get(2) {
            let _ = unhide_password(pw, b"fuzz-secret", &p.authenticator);
        }
        let dict = Dictionary::builtin();
        for a in &p.attributes {
            if let Some(def) = dict.by_code(0, a.typ) {
                let _ = dict.format(def, &a.value);
            }
            if let Some((vendor, subs)) = a.vendor_parts() {
                for (t, v) in subs {
                    if let Some(def) = dict.by_code(vendor, t) {
                        let _ = dict.format(def, v);
                    }
                }
            }
        }
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        let again = p.encode().expect("a decoded packet encodes");
        assert_eq!(again, data[..len]);
    }
});
