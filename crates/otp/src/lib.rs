//! HOTP and TOTP one-time passwords (RFC 4226, RFC 6238) as Tessera's authenticators need them:
//! code generation with SHA-1/SHA-256/SHA-512 and 6 or 8 digits, constant-time search of a
//! look-ahead window, resynchronisation from two consecutive codes, `otpauth://` enrollment URIs
//! and their QR codes (terminal, SVG, PNG), and the token files seeds arrive in (PSKC,
//! privacyIDEA's CSV).
//!
//! Pure: no I/O, no clock. Callers pass the counter or the Unix time. Depends on nothing internal.

mod code;
pub mod import;
mod qr;
mod uri;

pub use code::{Algorithm, Digits, OtpKey, TotpParams, hotp, totp_counter};
pub use qr::{QrError, qr_png, qr_svg, qr_terminal};
pub use uri::{Base32Error, OtpAuthUri, OtpKind, decode_base32, encode_base32};
