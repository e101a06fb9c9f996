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
