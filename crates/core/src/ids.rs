//! Identifiers as newtypes, so that a serial is never passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }
    };
}

/// The longest login name (or realm name) a request may carry, in bytes.
pub const MAX_LOGIN_NAME: usize = 256;

/// A login or realm name a request may carry: at most [`MAX_LOGIN_NAME`] bytes and no control
/// characters (which no directory holds in a name, and which log lines, audit records and keys
/// must never see raw).
pub fn login_name_ok(name: &str) -> bool {
    name.len() <= MAX_LOGIN_NAME && !name.chars().any(char::is_control)
}

/// `text` with control characters written as `\u{..}` escapes, for records of refused input.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

string_id!(
    /// A user's stable id inside its user source (local: generated; LDAP: entryUUID/objectGUID).
    UserId
);
string_id!(
    /// An authenticator's serial, e.g. `TOTP1A2B3C4D`. Unique across the store.
    Serial
);
string_id!(
    /// The name of a user source ("auth profile"), e.g. `local` or `corp-ad`.
    SourceName
);
string_id!(
    /// The name of a realm.
    RealmName
);
string_id!(
    /// The name of an application profile.
    AppName
);

/// The pending state of a multi-leg login: 20 decimal digits, as privacyIDEA clients expect. The
/// RADIUS `State` attribute and the web session's pending login carry the same value.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransactionId(String);

impl TransactionId {
    pub const LEN: usize = 20;

    /// Accepts exactly 20 ASCII digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| TransactionId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({})", self.0)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user as authenticators reference it: the source that owns the user and the user's id there.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UserRef {
    pub source: SourceName,
    pub id: UserId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_id_is_twenty_digits() {
        assert!(TransactionId::parse("12345678901234567890").is_some());
        assert!(TransactionId::parse("1234567890123456789").is_none());
        assert!(TransactionId::parse("1234567890123456789a").is_none());
        assert!(TransactionId::parse("").is_none());
    }
}

#[cfg(test)]
mod login_name_tests {
    use super::*;

    #[test]
    fn control_characters_are_no_login_name() {
        assert!(login_name_ok("alice@corp.example"));
        assert!(login_name_ok("Zoë O'Brien"));
        for bad in ["dave\u{1f}mfa", "a\u{0}", "a\nb", "a\u{7f}", "a\u{85}"] {
            assert!(!login_name_ok(bad), "{bad:?}");
        }
        assert!(!login_name_ok(&"a".repeat(257)));
        assert_eq!(escape_controls("dave\u{1f}mfa"), "dave\\u{1f}mfa");
    }
}
