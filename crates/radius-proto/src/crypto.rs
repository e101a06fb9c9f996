//! The shared-secret cryptography of RADIUS: User-Password hiding (RFC 2865 §5.2), the
//! Response Authenticator (RFC 2865 §3), the Accounting-Request Authenticator (RFC 2866 §3) and
//! Message-Authenticator (RFC 3579 §3.2, RFC 2869 §5.14).
//!
//! MD5 and HMAC-MD5 are what the protocol specifies; they are used here only because the wire
//! format requires them.

use crate::packet::{Attribute, Code, DecodeError, EncodeError, MIN_PACKET, Packet, attr};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

type HmacMd5 = Hmac<Md5>;

/// The longest User-Password RFC 2865 §5.2 allows.
pub const MAX_PASSWORD: usize = 128;

/// Hides a User-Password: padded with zeros to a multiple of 16 octets, each block XORed with
/// MD5(secret + previous ciphertext block), the first with MD5(secret + Request Authenticator).
pub fn hide_password(
    password: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, EncodeError> {
    if password.len() > MAX_PASSWORD {
        return Err(EncodeError::PasswordTooLong(password.len()));
    }
    let blocks = password.len().div_ceil(16).max(1);
    let mut out = vec![0u8; blocks * 16];
    out[..password.len()].copy_from_slice(password);
    let mut prev: [u8; 16] = *authenticator;
    for chunk in out.chunks_mut(16) {
        let b = md5_of(&[secret, &prev]);
        for (c, k) in chunk.iter_mut().zip(b.iter()) {
            *c ^= k;
        }
        prev.copy_from_slice(chunk);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("hidden User-Password of {0} octets is not a multiple of 16 between 16 and 128")]
    BadLength(usize),
}

/// Reveals a hidden User-Password; the zero padding is removed.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    authenticator: &[u8; 16],
) -> Result<Vec<u8>, PasswordError> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) || hidden.len() > MAX_PASSWORD {
        return Err(PasswordError::BadLength(hidden.len()));
    }
    let mut out = Vec::with_capacity(hidden.len());
    let mut prev: &[u8] = authenticator;
    for chunk in hidden.chunks(16) {
        let b = md5_of(&[secret, prev]);
        out.extend(chunk.iter().zip(b.iter()).map(|(c, k)| c ^ k));
        prev = chunk;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Ok(out)
}

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-MD5 keyed with the shared secret over `packet` (whose Message-Authenticator value must
/// already be 16 zero octets).
pub fn message_authenticator(packet: &[u8], secret: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match HmacMd5::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; 16],
    };
    mac.update(packet);
    mac.finalize().into_bytes().into()
}

/// The offsets of the values of every attribute of `typ` in an encoded packet.
fn value_offsets(raw: &[u8], typ: u8) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut at = MIN_PACKET;
    while at + 2 <= raw.len() {
        let len = raw[at + 1] as usize;
        if len < 2 || at + len > raw.len() {
            break;
        }
        if raw[at] == typ {
            found.push((at + 2, len - 2));
        }
        at += len;
    }
    found
}

/// Whether the Message-Authenticator whose value starts at `at` is right. `buf` must already
/// hold the authenticator the HMAC covers; the value is zeroed in place.
fn message_authenticator_ok(buf: &mut [u8], at: usize, secret: &[u8]) -> bool {
    let mut received = [0u8; 16];
    received.copy_from_slice(&buf[at..at + 16]);
    buf[at..at + 16].fill(0);
    bool::from(message_authenticator(buf, secret).ct_eq(&received))
}

/// Encodes a packet with `attributes` (any Message-Authenticator among them dropped), after a
/// zeroed Message-Authenticator when `with_ma` (to be filled in at `MIN_PACKET + 2`).
fn encode_with_ma_slot(
    code: Code,
    identifier: u8,
    authenticator: [u8; 16],
    attributes: &[Attribute],
    with_ma: bool,
) -> Result<Vec<u8>, EncodeError> {
    let mut p = Packet::new(code, identifier, authenticator);
    p.attributes.reserve(attributes.len() + 1);
    if with_ma {
        p.attributes
            .push(Attribute::new(attr::MESSAGE_AUTHENTICATOR, [0u8; 16]));
    }
    p.attributes.extend(
        attributes
            .iter()
            .filter(|a| a.typ != attr::MESSAGE_AUTHENTICATOR)
            .cloned(),
    );
    p.encode()
}

/// What checking a received request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestCheck {
    /// Every authenticator present is right, and Message-Authenticator was present.
    Valid,
    /// The authenticators present are right, but there is no Message-Authenticator.
    NoMessageAuthenticator,
    /// Message-Authenticator is wrong, not 16 octets, or present twice: wrong shared secret or
    /// a forged packet.
    BadMessageAuthenticator,
    /// The Accounting-Request Authenticator is wrong: wrong shared secret or forged.
    BadRequestAuthenticator,
}

/// Checks the authenticators of a received request (`raw` as received; octets beyond its
/// Length are ignored). Access-Request and Status-Server carry a random Request Authenticator,
/// so only Message-Authenticator proves knowledge of the secret there; an Accounting-Request's
/// Request Authenticator is itself a keyed digest (RFC 2866 §3).
pub fn verify_request(raw: &[u8], secret: &[u8]) -> Result<RequestCheck, DecodeError> {
    let len = Packet::wire_length(raw)?;
    let mut buf = raw[..len].to_vec();
    let code = Code(buf[0]);
    if code == Code::ACCOUNTING_REQUEST {
        let mut zeroed = buf.clone();
        zeroed[4..20].fill(0);
        let expected = md5_of(&[&zeroed, secret]);
        if !bool::from(expected.ct_eq(&buf[4..20])) {
            return Ok(RequestCheck::BadRequestAuthenticator);
        }
        // Message-Authenticator of an Accounting-Request is computed with a zero authenticator.
        buf[4..20].fill(0);
    }
    let mas = value_offsets(&buf, attr::MESSAGE_AUTHENTICATOR);
    match mas.as_slice() {
        [] => Ok(RequestCheck::NoMessageAuthenticator),
        [(at, 16)] => Ok(if message_authenticator_ok(&mut buf, *at, secret) {
            RequestCheck::Valid
        } else {
            RequestCheck::BadMessageAuthenticator
        }),
        _ => Ok(RequestCheck::BadMessageAuthenticator),
    }
}

/// Encodes a reply to a request: Message-Authenticator first (the BlastRADIUS mitigation of
/// draft-ietf-radext-deprecating-radius and FreeRADIUS 3.2.5), then `attributes` (any
/// Message-Authenticator among them is dropped), then the Response Authenticator over it all.
/// The request is taken to be an Accounting-Request for an Accounting-Response and an
/// Access-Request otherwise; see [`encode_reply_to`] for Status-Server.
pub fn encode_reply(
    code: Code,
    identifier: u8,
    request_authenticator: &[u8; 16],
    attributes: &[Attribute],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let request = if code == Code::ACCOUNTING_RESPONSE {
        Code::ACCOUNTING_REQUEST
    } else {
        Code::ACCESS_REQUEST
    };
    encode_reply_to(
        request,
        code,
        identifier,
        request_authenticator,
        attributes,
        secret,
    )
}

/// [`encode_reply`] for a request of type `request_code`. The Message-Authenticator of an
/// Accounting-Response is computed over a zero authenticator, except in answer to Status-Server,
/// where the request's authenticator is used (RFC 5997 §3).
pub fn encode_reply_to(
    request_code: Code,
    code: Code,
    identifier: u8,
    request_authenticator: &[u8; 16],
    attributes: &[Attribute],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut buf = encode_with_ma_slot(code, identifier, *request_authenticator, attributes, true)?;
    let ma = if code == Code::ACCOUNTING_RESPONSE && request_code != Code::STATUS_SERVER {
        // The Message-Authenticator of an Accounting-Response is computed over a zero
        // authenticator, as for the Accounting-Request (what FreeRADIUS and pyrad verify).
        let mut zeroed = buf.clone();
        zeroed[4..20].fill(0);
        message_authenticator(&zeroed, secret)
    } else {
        message_authenticator(&buf, secret)
    };
    buf[MIN_PACKET + 2..MIN_PACKET + 18].copy_from_slice(&ma);
    let auth = md5_of(&[&buf, secret]);
    buf[4..20].copy_from_slice(&auth);
    Ok(buf)
}

/// Encodes a request as a client sends it. `attributes` must already hold the hidden
/// User-Password (see [`hide_password`]). With `message_authenticator`, one is added first.
/// An Access-Request or Status-Server uses `authenticator` (16 random octets); an
/// Accounting-Request gets its keyed Request Authenticator and ignores it.
pub fn encode_request(
    code: Code,
    identifier: u8,
    authenticator: &[u8; 16],
    attributes: &[Attribute],
    secret: &[u8],
    message_authenticator_first: bool,
) -> Result<Vec<u8>, EncodeError> {
    let accounting = code == Code::ACCOUNTING_REQUEST;
    let auth = if accounting {
        [0u8; 16]
    } else {
        *authenticator
    };
    let mut buf = encode_with_ma_slot(
        code,
        identifier,
        auth,
        attributes,
        message_authenticator_first,
    )?;
    if message_authenticator_first {
        let ma = message_authenticator(&buf, secret);
        buf[MIN_PACKET + 2..MIN_PACKET + 18].copy_from_slice(&ma);
    }
    if accounting {
        let a = md5_of(&[&buf, secret]);
        buf[4..20].copy_from_slice(&a);
    }
    Ok(buf)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the Response Authenticator is wrong")]
    BadResponseAuthenticator,
    #[error("the Message-Authenticator is wrong")]
    BadMessageAuthenticator,
    #[error("the reply has no Message-Authenticator")]
    NoMessageAuthenticator,
}

/// Checks a reply against the request it answers (client side) and decodes it. With
/// `require_message_authenticator`, a reply without one is refused.
pub fn verify_reply(
    raw: &[u8],
    request_authenticator: &[u8; 16],
    secret: &[u8],
    require_message_authenticator: bool,
) -> Result<Packet, ReplyError> {
    let len = Packet::wire_length(raw)?;
    let mut buf = raw[..len].to_vec();
    let received_auth: [u8; 16] = {
        let mut a = [0u8; 16];
        a.copy_from_slice(&buf[4..20]);
        a
    };
    buf[4..20].copy_from_slice(request_authenticator);
    let expected = md5_of(&[&buf, secret]);
    if !bool::from(expected.ct_eq(&received_auth)) {
        return Err(ReplyError::BadResponseAuthenticator);
    }
    match value_offsets(&buf, attr::MESSAGE_AUTHENTICATOR).as_slice() {
        [] if require_message_authenticator => return Err(ReplyError::NoMessageAuthenticator),
        [] => {}
        [(at, 16)] => {
            if buf[0] == Code::ACCOUNTING_RESPONSE.0 {
                buf[4..20].fill(0);
            }
            if !message_authenticator_ok(&mut buf, *at, secret) {
                return Err(ReplyError::BadMessageAuthenticator);
            }
        }
        _ => return Err(ReplyError::BadMessageAuthenticator),
    }
    Ok(Packet::decode(raw)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 2865 §7.1: user "nemo", password "arctangent", secret "xyzzy5461".
    const RFC2865_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
        04 06 c0 a8 01 10 05 06 00 00 00 03";
    const RFC2865_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
        9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";

    #[test]
    fn rfc2865_7_1_user_password_hiding() {
        let req = Packet::decode(&hex(RFC2865_REQUEST)).unwrap();
        let hidden = req.get(attr::USER_PASSWORD).unwrap();
        assert_eq!(
            hide_password(b"arctangent", b"xyzzy5461", &req.authenticator).unwrap(),
            hidden
        );
        assert_eq!(
            unhide_password(hidden, b"xyzzy5461", &req.authenticator).unwrap(),
            b"arctangent"
        );
        // A wrong secret reveals garbage, not the password.
        assert_ne!(
            unhide_password(hidden, b"xyzzy5462", &req.authenticator).unwrap(),
            b"arctangent"
        );
    }

    #[test]
    fn rfc2865_7_1_response_authenticator() {
        let req = Packet::decode(&hex(RFC2865_REQUEST)).unwrap();
        let accept = hex(RFC2865_ACCEPT);
        // The RFC's reply has no Message-Authenticator (it predates RFC 3579).
        let p = verify_reply(&accept, &req.authenticator, b"xyzzy5461", false).unwrap();
        assert_eq!(p.code, Code::ACCESS_ACCEPT);
        assert_eq!(
            verify_reply(&accept, &req.authenticator, b"xyzzy5461", true),
            Err(ReplyError::NoMessageAuthenticator)
        );
        assert_eq!(
            verify_reply(&accept, &req.authenticator, b"wrong", false),
            Err(ReplyError::BadResponseAuthenticator)
        );
    }

    #[test]
    fn rfc2865_5_2_long_passwords_chain_blocks() {
        let auth = [0x42u8; 16];
        let pw = b"a password that is longer than two blocks of sixteen";
        let hidden = hide_password(pw, b"s3cret", &auth).unwrap();
        assert_eq!(hidden.len(), 64);
        assert_eq!(unhide_password(&hidden, b"s3cret", &auth).unwrap(), pw);
        assert_eq!(hide_password(b"", b"s", &auth).unwrap().len(), 16);
        assert!(hide_password(&[b'x'; 129], b"s", &auth).is_err());
        assert!(unhide_password(&[0; 15], b"s", &auth).is_err());
        assert!(unhide_password(&[0; 144], b"s", &auth).is_err());
    }

    #[test]
    fn rfc3579_3_2_message_authenticator_on_access_request() {
        let auth = [9u8; 16];
        let attrs = [Attribute::new(attr::USER_NAME, "nemo")];
        let raw = encode_request(Code::ACCESS_REQUEST, 7, &auth, &attrs, b"secret", true).unwrap();
        assert_eq!(raw[20], attr::MESSAGE_AUTHENTICATOR);
        // The value is HMAC-MD5(secret, packet with the value zeroed).
        let mut zeroed = raw.clone();
        zeroed[22..38].fill(0);
        assert_eq!(message_authenticator(&zeroed, b"secret"), raw[22..38]);
        assert_eq!(verify_request(&raw, b"secret"), Ok(RequestCheck::Valid));
        assert_eq!(
            verify_request(&raw, b"other"),
            Ok(RequestCheck::BadMessageAuthenticator)
        );
        let mut tampered = raw.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            verify_request(&tampered, b"secret"),
            Ok(RequestCheck::BadMessageAuthenticator)
        );
        let bare =
            encode_request(Code::ACCESS_REQUEST, 7, &auth, &attrs, b"secret", false).unwrap();
        assert_eq!(
            verify_request(&bare, b"secret"),
            Ok(RequestCheck::NoMessageAuthenticator)
        );
    }

    #[test]
    fn rfc3579_3_2_two_message_authenticators_are_refused() {
        let auth = [9u8; 16];
        let attrs = [Attribute::new(attr::USER_NAME, "nemo")];
        let mut p = Packet::decode(
            &encode_request(Code::ACCESS_REQUEST, 1, &auth, &attrs, b"s", true).unwrap(),
        )
        .unwrap();
        let ma = p.attributes[0].clone();
        p.attributes.push(ma);
        assert_eq!(
            verify_request(&p.encode().unwrap(), b"s"),
            Ok(RequestCheck::BadMessageAuthenticator)
        );
    }

    #[test]
    fn rfc3579_3_2_reply_carries_message_authenticator_first() {
        let req_auth = [3u8; 16];
        let raw = encode_reply(
            Code::ACCESS_CHALLENGE,
            5,
            &req_auth,
            &[
                Attribute::new(attr::REPLY_MESSAGE, "Enter OTP"),
                Attribute::new(attr::STATE, "123"),
            ],
            b"secret",
        )
        .unwrap();
        let p = verify_reply(&raw, &req_auth, b"secret", true).unwrap();
        assert_eq!(p.attributes[0].typ, attr::MESSAGE_AUTHENTICATOR);
        assert_eq!(p.text(attr::REPLY_MESSAGE).as_deref(), Some("Enter OTP"));
        assert!(verify_reply(&raw, &[4u8; 16], b"secret", true).is_err());
    }

    #[test]
    fn rfc2866_3_accounting_request_authenticator() {
        let attrs = [
            Attribute::new(attr::ACCT_STATUS_TYPE, 1u32.to_be_bytes()),
            Attribute::new(attr::ACCT_SESSION_ID, "s1"),
        ];
        for with_ma in [false, true] {
            let raw = encode_request(
                Code::ACCOUNTING_REQUEST,
                2,
                &[0; 16],
                &attrs,
                b"acct",
                with_ma,
            )
            .unwrap();
            let mut zeroed = raw.clone();
            zeroed[4..20].fill(0);
            assert_eq!(md5_of(&[&zeroed, b"acct"]), raw[4..20]);
            let expected = if with_ma {
                RequestCheck::Valid
            } else {
                RequestCheck::NoMessageAuthenticator
            };
            assert_eq!(verify_request(&raw, b"acct"), Ok(expected));
            assert_eq!(
                verify_request(&raw, b"wrong"),
                Ok(RequestCheck::BadRequestAuthenticator)
            );
        }
    }
}
