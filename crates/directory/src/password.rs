//! Password changes: how a bind went, and the directory's refusals in words for the user.

use super::*;
use pool::rc_text;
use tessera_core::source::PasswordChangeError;

/// The directory's answer to a bind.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Bind {
    Accepted,
    /// With the server's diagnostic text (AD: `... data 52e ...`).
    Refused(String),
}

/// AD's reason inside an invalid-credentials answer: `data 532` (password expired), `773`
/// (must change), `775` (locked), `533` (disabled), `52e` (wrong password).
pub(super) fn ad_data_code(text: &str) -> Option<&str> {
    let at = text.find("data ")? + 5;
    text.get(at..)?.split([',', ' ']).next()
}

/// A directory's refusal of a password change, in a user's words.
pub(super) fn password_error(rc: u32, text: &str, ad: bool) -> PasswordChangeError {
    let detail = text.trim().trim_end_matches('\0').to_string();
    match rc {
        49 => PasswordChangeError::WrongOldPassword,
        // AD: "0000052D: Constraint violation" is its password policy; OpenLDAP ppolicy too.
        19 => PasswordChangeError::PolicyViolation(friendly_policy(&detail)),
        // AD answers "unwilling to perform" for a policy refusal (and for unencrypted links,
        // which the profile check rules out).
        53 if ad => PasswordChangeError::PolicyViolation(friendly_policy(&detail)),
        50 => PasswordChangeError::Refused(
            "not allowed to change this password (insufficient access rights)".into(),
        ),
        _ => PasswordChangeError::Refused(rc_text(rc, &detail)),
    }
}

/// The part of a directory's policy message worth showing to a user.
pub(super) fn friendly_policy(detail: &str) -> String {
    if detail.contains("0000052D") {
        return "too short, too simple, used before or changed too recently".into();
    }
    detail.chars().take(200).collect()
}
