//! RADIUS codec, sans I/O: packets and attributes (RFC 2865, RFC 2866 accounting, RFC 2869
//! extensions), vendor-specific attributes and a dictionary of the common vendors, User-Password
//! hiding, the Request/Response Authenticators and Message-Authenticator (RFC 3579).
//!
//! Written by hand because the published RADIUS crates lack Message-Authenticator computation
//! and verification (needed against BlastRADIUS, CVE-2024-3596) or are tied to another async
//! runtime; what is needed is small and security-critical, so it is tested against the RFC
//! examples, property tests, a fuzz target and real peers (radclient, pyrad, FreeRADIUS).
//!
//! Depends on nothing internal.

mod crypto;
mod dict;
mod packet;

pub use crypto::{
    MAX_PASSWORD, PasswordError, ReplyError, RequestCheck, encode_reply, encode_reply_to,
    encode_request, hide_password, message_authenticator, unhide_password, verify_reply,
    verify_request,
};
pub use dict::{AttrDef, DataType, Dictionary, ValueError};
pub use packet::{
    Attribute, Code, DecodeError, EncodeError, MAX_PACKET, MAX_VALUE, MIN_PACKET, Packet,
    VendorPart, attr,
};
