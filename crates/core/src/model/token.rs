//! Authenticators ("tokens"). This issue brings the OATH kinds, HOTP and TOTP; the other kinds
//! (SMS, mail, push, WebAuthn, …) extend [`TokenKind`].

use crate::ids::{Serial, UserRef};
use serde::{Deserialize, Serialize};
use tessera_otp::{Algorithm, Digits, OtpKey, TotpParams};
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Hotp,
    Totp,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Hotp => "hotp",
            TokenKind::Totp => "totp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hotp" => Some(TokenKind::Hotp),
            "totp" => Some(TokenKind::Totp),
            _ => None,
        }
    }

    /// Serial prefix, as privacyIDEA uses (`TOTP1A2B3C4D`).
    pub fn serial_prefix(self) -> &'static str {
        match self {
            TokenKind::Hotp => "OATH",
            TokenKind::Totp => "TOTP",
        }
    }
}

/// Administrative state of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Enabled,
    Disabled,
    /// Permanently unusable; kept for the audit trail.
    Revoked,
}

/// A token as the engine sees it, with its seed unsealed.
#[derive(Clone)]
pub struct Token {
    pub serial: Serial,
    pub kind: TokenKind,
    pub owner: Option<UserRef>,
    pub description: String,
    pub seed: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    pub digits: Digits,
    /// TOTP step in seconds (ignored for HOTP).
    pub period: u32,
    /// The lowest counter (HOTP) or time step (TOTP) that may still be accepted: one past the
    /// last accepted one. This is what makes every OTP single-use.
    pub counter: i64,
    /// HOTP: counters looked ahead; TOTP: steps checked before and after now.
    pub window: u32,
    pub sync_window: u32,
    pub pin_hash: Option<String>,
    pub fail_count: u32,
    pub max_fail: u32,
    /// When the fail counter reached `max_fail` (Unix seconds).
    pub fail_exceeded_at: Option<i64>,
    pub state: TokenState,
    /// First OTP of a pending automatic resync: its counter and when it was seen.
    pub resync_counter: Option<i64>,
    pub resync_at: Option<i64>,
    pub count_auth: i64,
    pub count_auth_success: i64,
    pub last_auth: Option<i64>,
    pub created_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .field("seed", &"***")
            .field("pin_hash", &self.pin_hash.as_ref().map(|_| "***"))
            .field("counter", &self.counter)
            .field("fail_count", &self.fail_count)
            .field("max_fail", &self.max_fail)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn otp_key(&self) -> OtpKey {
        OtpKey::new(self.seed.to_vec(), self.algorithm, self.digits)
    }

    pub fn totp_params(&self) -> TotpParams {
        TotpParams {
            period: u64::from(self.period.max(1)),
            t0: 0,
        }
    }

    pub fn is_usable_state(&self) -> bool {
        self.state == TokenState::Enabled
    }

    /// The fail counter has reached the maximum and, at `now`, automatic clearing (after
    /// `clear_minutes`, 0 = never) is not yet due.
    pub fn is_locked_by_failcount(&self, now: i64, clear_minutes: u32) -> bool {
        if self.fail_count < self.max_fail {
            return false;
        }
        if clear_minutes == 0 {
            return true;
        }
        match self.fail_exceeded_at {
            Some(at) => now < at.saturating_add(i64::from(clear_minutes) * 60),
            None => true,
        }
    }
}

/// What enrollment stores. The store seals the seed.
#[derive(Clone)]
pub struct NewToken {
    pub serial: Serial,
    pub kind: TokenKind,
    pub owner: Option<UserRef>,
    pub description: String,
    pub seed: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    pub digits: Digits,
    pub period: u32,
    pub counter: i64,
    pub window: u32,
    pub sync_window: u32,
    pub pin_hash: Option<String>,
    /// Wrong codes counted already (a token moved from another server keeps its count).
    pub fail_count: u32,
    pub max_fail: u32,
    pub state: TokenState,
    pub created_at: i64,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("serial", &self.serial)
            .field("kind", &self.kind)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// An administrative change to a token. `None` leaves a field unchanged.
#[derive(Clone, Debug, Default)]
pub struct TokenPatch {
    pub description: Option<String>,
    pub state: Option<TokenState>,
    /// `Some(None)` removes the PIN.
    pub pin_hash: Option<Option<String>>,
    pub max_fail: Option<u32>,
    pub window: Option<u32>,
    pub sync_window: Option<u32>,
    /// Resets the fail counter (and its timestamp).
    pub reset_failcount: bool,
    /// Moves the counter forward (resynchronisation), never back: an OTP once accepted stays
    /// spent. When the token's counter is past it already (a later OTP was accepted meanwhile),
    /// nothing of the patch is applied.
    pub counter: Option<i64>,
}
