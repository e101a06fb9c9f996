//! Lockout budgets: what a failed-attempt counter counts ([`LockKey`]), how much it allows
//! ([`LockPolicy`]) and where it stands ([`LockState`]).
//!
//! Every attempt that checks a secret (password, PIN and OTP, sent code, MFA password, an
//! administrator's password) first takes one attempt from its budgets with one conditional write
//! in the store ([`crate::store::Store::reserve_attempt`]), and only then is checked: attempts
//! sent at once get no more checks than attempts sent one after another. A right answer gives its
//! attempt back (or, at the end of a login, clears the count); a wrong one keeps it.

use std::net::IpAddr;

/// What one failed-attempt counter counts. Kept in the store in one unambiguous form
/// ([`LockKey::stored`]): no login name, realm or address can make two keys collide.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// A login name of a realm (the account's own name once the user is found): the first
    /// factor's budgets, and the later factors' while MFA locking is off. `address`: counted per
    /// client address as well (`lock_per_address`).
    Account {
        realm: String,
        login: String,
        address: Option<String>,
    },
    /// An account's MFA step (`mfa_account_locking`).
    Mfa { realm: String, login: String },
    /// An administrator's sign-ins (by name, and per client address with `lock_per_address`).
    Admin {
        name: String,
        address: Option<String>,
    },
    /// The answers to factor `factor` of one login session (seed 003's retry counts).
    Session { transaction: String, factor: u32 },
    /// Codes sent to an account within the hour (`sent_code_max_per_hour`).
    SentCodes { realm: String, login: String },
}

impl LockKey {
    /// The account budget of `login` in `realm` (names compare case-insensitively).
    pub fn account(realm: &str, login: &str) -> LockKey {
        LockKey::Account {
            realm: realm.to_lowercase(),
            login: login.to_lowercase(),
            address: None,
        }
    }

    /// The account budget of `login` in `realm` for attempts from `address`.
    pub fn account_from(realm: &str, login: &str, address: Option<IpAddr>) -> LockKey {
        LockKey::Account {
            realm: realm.to_lowercase(),
            login: login.to_lowercase(),
            address: Some(address_part(address)),
        }
    }

    pub fn mfa(realm: &str, login: &str) -> LockKey {
        LockKey::Mfa {
            realm: realm.to_lowercase(),
            login: login.to_lowercase(),
        }
    }

    pub fn admin(name: &str) -> LockKey {
        LockKey::Admin {
            name: name.to_lowercase(),
            address: None,
        }
    }

    pub fn admin_from(name: &str, address: Option<IpAddr>) -> LockKey {
        LockKey::Admin {
            name: name.to_lowercase(),
            address: Some(address_part(address)),
        }
    }

    pub fn session(transaction: &str, factor: u32) -> LockKey {
        LockKey::Session {
            transaction: transaction.to_string(),
            factor,
        }
    }

    pub fn sent_codes(realm: &str, login: &str) -> LockKey {
        LockKey::SentCodes {
            realm: realm.to_lowercase(),
            login: login.to_lowercase(),
        }
    }

    /// The form kept in the store: a JSON array whose first element names the kind
    /// (`["account","default","alice"]`, `["account@","default","alice","192.0.2.1"]`). JSON
    /// quotes every character that could end a part, so distinct keys never share a form.
    pub fn stored(&self) -> String {
        let parts: Vec<&str> = match self {
            LockKey::Account {
                realm,
                login,
                address: None,
            } => vec!["account", realm, login],
            LockKey::Account {
                realm,
                login,
                address: Some(a),
            } => vec!["account@", realm, login, a],
            LockKey::Mfa { realm, login } => vec!["mfa", realm, login],
            LockKey::Admin {
                name,
                address: None,
            } => vec!["admin", name],
            LockKey::Admin {
                name,
                address: Some(a),
            } => vec!["admin@", name, a],
            LockKey::SentCodes { realm, login } => vec!["sent-codes", realm, login],
            LockKey::Session {
                transaction,
                factor,
            } => {
                return serde_json::json!(["session", transaction, factor]).to_string();
            }
        };
        serde_json::Value::from(parts).to_string()
    }

    /// The key a stored form stands for (`None` for anything else).
    pub fn from_stored(stored: &str) -> Option<LockKey> {
        let parts: Vec<serde_json::Value> = serde_json::from_str(stored).ok()?;
        let text = |i: usize| parts.get(i)?.as_str().map(str::to_string);
        let key = match (text(0)?.as_str(), parts.len()) {
            ("account", 3) => LockKey::Account {
                realm: text(1)?,
                login: text(2)?,
                address: None,
            },
            ("account@", 4) => LockKey::Account {
                realm: text(1)?,
                login: text(2)?,
                address: Some(text(3)?),
            },
            ("mfa", 3) => LockKey::Mfa {
                realm: text(1)?,
                login: text(2)?,
            },
            ("admin", 2) => LockKey::Admin {
                name: text(1)?,
                address: None,
            },
            ("admin@", 3) => LockKey::Admin {
                name: text(1)?,
                address: Some(text(2)?),
            },
            ("sent-codes", 3) => LockKey::SentCodes {
                realm: text(1)?,
                login: text(2)?,
            },
            ("session", 3) => LockKey::Session {
                transaction: text(1)?,
                factor: u32::try_from(parts.get(2)?.as_u64()?).ok()?,
            },
            _ => return None,
        };
        Some(key)
    }

    /// What the key counts, for administrators: `account`, `account from 192.0.2.1`, `MFA
    /// step`, ….
    pub fn describe(&self) -> String {
        let from = |a: &str| match a {
            "" => "an unknown address".to_string(),
            a => a.to_string(),
        };
        match self {
            LockKey::Account { address: None, .. } | LockKey::Admin { address: None, .. } => {
                "sign-ins".into()
            }
            LockKey::Account {
                address: Some(a), ..
            }
            | LockKey::Admin {
                address: Some(a), ..
            } => format!("sign-ins from {}", from(a)),
            LockKey::Mfa { .. } => "MFA step".into(),
            LockKey::Session { .. } => "login session".into(),
            LockKey::SentCodes { .. } => "codes sent within the hour".into(),
        }
    }

    /// The stored prefix of every per-address key of an account (for unlocking it from
    /// everywhere).
    pub fn account_addresses_prefix(realm: &str, login: &str) -> String {
        let full = serde_json::json!(["account@", realm.to_lowercase(), login.to_lowercase()]);
        open_array(&full)
    }

    /// The stored prefix of every per-address key of an administrator.
    pub fn admin_addresses_prefix(name: &str) -> String {
        open_array(&serde_json::json!(["admin@", name.to_lowercase()]))
    }

    /// The stored prefix of every login session's counters (purged once their sessions are
    /// gone).
    pub const SESSION_PREFIX: &'static str = "[\"session\",";
}

/// A JSON array's text without its closing bracket, and a comma: what every longer array with
/// the same first elements starts with.
fn open_array(array: &serde_json::Value) -> String {
    let text = array.to_string();
    format!("{},", text.strip_suffix(']').unwrap_or(&text))
}

/// A client address as a lockout key counts it: IPv6 by its /64 (one host usually holds a
/// whole /64), unknown as the empty string.
fn address_part(address: Option<IpAddr>) -> String {
    match address.map(crate::netmatch::client_group) {
        None => String::new(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(net)) => format!("{net}/64"),
    }
}

/// Failed-attempt counters of one key. The counts include attempts being checked right now
/// (each took its attempt before the check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    pub password_fails: u32,
    pub otp_fails: u32,
    /// When the current count started (Unix seconds).
    pub first_fail_at: i64,
    /// Locked until this time (Unix seconds), if a budget was used up.
    pub locked_until: Option<i64>,
}

impl LockState {
    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// The attempts counted of `kind`.
    pub fn fails(&self, kind: FailKind) -> u32 {
        match kind {
            FailKind::Password => self.password_fails,
            FailKind::Otp => self.otp_fails,
        }
    }
}

/// Which budget an attempt counts against: passwords, or codes (OTPs with their PIN, sent codes,
/// links).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    Password,
    Otp,
}

/// The lockout budgets (seed 003).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockPolicy {
    pub max_password: u32,
    pub max_otp: u32,
    pub lock_secs: i64,
    pub interval_secs: i64,
}

impl LockPolicy {
    /// The attempts of `kind` the policy allows.
    pub fn max(&self, kind: FailKind) -> u32 {
        match kind {
            FailKind::Password => self.max_password,
            FailKind::Otp => self.max_otp,
        }
    }
}

/// An attempt taken from a budget before its check, to be given back if it was right.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub key: LockKey,
    pub kind: FailKind,
    pub policy: LockPolicy,
    /// When the count it went into started (Unix seconds): it is given back to that count only.
    pub since: i64,
    /// Which attempt of the count it is (1 for the first).
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_never_collide() {
        // The collisions the old `\x1f`-joined strings allowed: a login carrying the separator,
        // and a realm named like the administrators' prefix.
        let a = LockKey::account("default", "dave\u{1f}mfa");
        let b = LockKey::mfa("default", "dave");
        assert_ne!(a.stored(), b.stored());
        assert_ne!(
            LockKey::account("admin", "root").stored(),
            LockKey::admin("root").stored()
        );
        assert_ne!(
            LockKey::account("a\",\"b", "c").stored(),
            LockKey::account("a", "b\",\"c").stored()
        );
        assert_eq!(
            LockKey::account("Default", "ALICE").stored(),
            r#"["account","default","alice"]"#
        );
        assert_eq!(
            LockKey::session("12345678901234567890", 1).stored(),
            r#"["session","12345678901234567890",1]"#
        );
        assert!(
            LockKey::session("1", 0)
                .stored()
                .starts_with(LockKey::SESSION_PREFIX)
        );
    }

    #[test]
    fn stored_forms_read_back() {
        let ip = Some("2001:db8::5".parse().unwrap());
        for key in [
            LockKey::account("r", "a\u{1f}b"),
            LockKey::account_from("r", "a", ip),
            LockKey::account_from("r", "a", None),
            LockKey::mfa("r", "a"),
            LockKey::admin("root"),
            LockKey::admin_from("root", ip),
            LockKey::session("12345678901234567890", 2),
            LockKey::sent_codes("r", "a"),
        ] {
            assert_eq!(LockKey::from_stored(&key.stored()), Some(key.clone()));
        }
        assert_eq!(LockKey::from_stored("default\u{1f}alice"), None);
        assert_eq!(LockKey::from_stored(r#"["account","r"]"#), None);
        assert_eq!(
            LockKey::account_from("r", "a", ip).describe(),
            "sign-ins from 2001:db8::/64"
        );
    }

    #[test]
    fn per_address_keys_share_the_account_prefix() {
        let prefix = LockKey::account_addresses_prefix("Default", "Alice");
        let key = LockKey::account_from("default", "alice", Some("192.0.2.7".parse().unwrap()));
        assert!(
            key.stored().starts_with(&prefix),
            "{} {prefix}",
            key.stored()
        );
        // Another account whose name starts the same does not.
        let other = LockKey::account_from("default", "alice2", None);
        assert!(!other.stored().starts_with(&prefix));
        // IPv6 counts by /64; IPv4-mapped addresses as IPv4.
        let v6a = LockKey::account_from("r", "u", Some("2001:db8:1:2::1".parse().unwrap()));
        let v6b = LockKey::account_from("r", "u", Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert_eq!(v6a, v6b);
        let mapped = LockKey::account_from("r", "u", Some("::ffff:192.0.2.1".parse().unwrap()));
        assert_eq!(
            mapped,
            LockKey::account_from("r", "u", Some("192.0.2.1".parse().unwrap()))
        );
        assert!(
            LockKey::admin_from("root", None)
                .stored()
                .starts_with(&LockKey::admin_addresses_prefix("ROOT"))
        );
    }
}
