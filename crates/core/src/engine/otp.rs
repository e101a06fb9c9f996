//! Checking OTPs against a user's tokens: look-ahead windows, single use, fail counters and
//! automatic resynchronisation (privacyIDEA semantics, seed 002).

use super::{Engine, EngineError, RejectReason};
use crate::model::{Token, TokenKind};
use crate::settings::SystemSettings;
use tessera_otp::{OtpKey, totp_counter};

/// The result of checking one OTP against candidate tokens.
pub(crate) enum OtpCheck {
    Accepted(Box<Token>),
    Failed(RejectReason),
}

/// The counters (HOTP) or time steps (TOTP) an OTP may come from at `now`, never below the
/// token's counter: everything at or before the last accepted OTP is spent.
pub(crate) fn auth_range(token: &Token, now: i64) -> Option<(u64, u64)> {
    range(token, now, token.window)
}

fn range(token: &Token, now: i64, window: u32) -> Option<(u64, u64)> {
    let floor = u64::try_from(token.counter.max(0)).unwrap_or(0);
    let window = u64::from(window);
    let (lo, hi) = match token.kind {
        TokenKind::Hotp => (floor, floor.saturating_add(window.max(1) - 1)),
        TokenKind::Totp => {
            let step = totp_counter(u64::try_from(now.max(0)).unwrap_or(0), token.totp_params());
            (
                step.saturating_sub(window).max(floor),
                step.saturating_add(window),
            )
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// The range searched when resynchronising: `sync_window` counters ahead (HOTP) or time steps
/// around now (TOTP).
pub(crate) fn sync_range(token: &Token, now: i64) -> Option<(u64, u64)> {
    range(token, now, token.sync_window)
}

fn to_i64(c: u64) -> i64 {
    i64::try_from(c).unwrap_or(i64::MAX)
}

impl Engine {
    /// Checks `otp` against each candidate token (with the OTP part that belongs to it). Before
    /// an OTP is compared with a token, one attempt is taken from the token's fail budget (one
    /// conditional write: OTPs sent at once get no more comparisons than `max_fail` allows); a
    /// locked token is passed over. The first token whose window holds the OTP, and whose
    /// counter the store moves past it, wins: the attempts taken from the other tokens are
    /// given back. Otherwise every attempt stays counted.
    pub(crate) async fn check_otps(
        &self,
        settings: &SystemSettings,
        candidates: &[(&Token, &str)],
        now: i64,
    ) -> Result<OtpCheck, EngineError> {
        let store = &self.ports.store;
        let count_auth = !settings.no_auth_counter;
        let clear = settings.failcounter_clear_minutes;
        let mut reason = RejectReason::WrongOtp;
        let mut wrong: Vec<&Token> = Vec::new();
        for (token, otp) in candidates {
            // Locked as read (no write for it), or locked by the time of the reservation.
            if token.is_locked_by_failcount(now, clear)
                || !store
                    .reserve_token_attempt(&token.serial, now, clear, count_auth)
                    .await?
            {
                reason = RejectReason::TokenLocked;
                continue;
            }
            let key = token.otp_key();
            let found = auth_range(token, now).and_then(|(lo, hi)| key.find(otp, lo, hi));
            if let Some(counter) = found {
                if store
                    .accept_otp(&token.serial, to_i64(counter), now, count_auth)
                    .await?
                {
                    self.give_back_tokens(&wrong, count_auth).await?;
                    return Ok(OtpCheck::Accepted(Box::new((*token).clone())));
                }
                // Another request accepted this or a later OTP first.
                reason = RejectReason::OtpReused;
                wrong.push(token);
                continue;
            }
            if was_used(token, &key, otp, now) {
                reason = RejectReason::OtpReused;
            }
            if settings.auto_resync
                && let Some(accepted) = self.auto_resync(settings, token, &key, otp, now).await?
            {
                self.give_back_tokens(&wrong, count_auth).await?;
                return Ok(OtpCheck::Accepted(Box::new(accepted)));
            }
            wrong.push(token);
        }
        Ok(OtpCheck::Failed(reason))
    }

    /// Gives back the attempts taken from tokens that another token's match made unneeded.
    async fn give_back_tokens(
        &self,
        tokens: &[&Token],
        count_auth: bool,
    ) -> Result<(), EngineError> {
        for t in tokens {
            self.ports
                .store
                .release_token_attempt(&t.serial, count_auth)
                .await?;
        }
        Ok(())
    }

    /// Automatic resync: the first wrong OTP found within the sync window is remembered; a
    /// second one with the next counter within the timeout moves the token there.
    async fn auto_resync(
        &self,
        settings: &SystemSettings,
        token: &Token,
        key: &OtpKey,
        otp: &str,
        now: i64,
    ) -> Result<Option<Token>, EngineError> {
        let store = &self.ports.store;
        let timeout = i64::from(settings.auto_resync_timeout_seconds);
        if let (Some(first), Some(at)) = (token.resync_counter, token.resync_at)
            && now.saturating_sub(at) <= timeout
            && let Ok(first) = u64::try_from(first)
            && let Some(next) = first.checked_add(1)
            && key.find(otp, next, next).is_some()
            && store
                .accept_otp(&token.serial, to_i64(next), now, !settings.no_auth_counter)
                .await?
        {
            return Ok(Some(token.clone()));
        }
        if let Some((lo, hi)) = sync_range(token, now)
            && let Some(c) = key.find(otp, lo, hi)
        {
            store
                .set_resync_state(&token.serial, Some(to_i64(c)), Some(now))
                .await?;
        }
        Ok(None)
    }
}

/// The OTP is one this token already accepted (within its window but below its counter).
fn was_used(token: &Token, key: &OtpKey, otp: &str, now: i64) -> bool {
    let Ok(floor) = u64::try_from(token.counter) else {
        return false;
    };
    if floor == 0 {
        return false;
    }
    let lo = match token.kind {
        TokenKind::Hotp => floor.saturating_sub(u64::from(token.window.max(1))),
        TokenKind::Totp => {
            let step = totp_counter(u64::try_from(now.max(0)).unwrap_or(0), token.totp_params());
            step.saturating_sub(u64::from(token.window))
        }
    };
    lo < floor && key.find(otp, lo, floor - 1).is_some()
}

/// Splits `pass` into (PIN, OTP) for a token with `digits`-long codes. `None` when `pass` is
/// too short or the split falls inside a multi-byte character.
pub(crate) fn split_pin(pass: &str, digits: usize, prepend_pin: bool) -> Option<(&str, &str)> {
    let n = pass.len();
    if n < digits {
        return None;
    }
    if prepend_pin {
        Some((pass.get(..n - digits)?, pass.get(n - digits..)?))
    } else {
        Some((pass.get(digits..)?, pass.get(..digits)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pin_both_positions() {
        assert_eq!(split_pin("1234123456", 6, true), Some(("1234", "123456")));
        assert_eq!(split_pin("1234561234", 6, false), Some(("1234", "123456")));
        assert_eq!(split_pin("123456", 6, true), Some(("", "123456")));
        assert_eq!(split_pin("12345", 6, true), None);
        // A split inside a multi-byte character is no split.
        assert_eq!(split_pin("pä12345", 6, true), None);
    }
}
