//! Applications (authentication profiles), realms and user-source definitions: the declarative
//! configuration objects an administrator manages.

use crate::ids::{AppName, RealmName, SourceName};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// Logins of users to a service.
    #[default]
    Normal,
    /// The self-service device registration panel.
    Registration,
    /// The self-service password reset panel.
    PasswordReset,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Normal => "normal",
            AppKind::Registration => "registration",
            AppKind::PasswordReset => "password_reset",
        }
    }
}

/// How one factor is proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// The user's password, checked by the user source the user was found in (the seeds' "LDAP"
    /// and "Local" authentication).
    #[serde(rename = "password", alias = "local", alias = "ldap")]
    Password,
    /// Password immediately followed by the OTP in one field (the seeds' "LDAP+OTP").
    #[serde(rename = "password+otp", alias = "ldap+otp", alias = "local+otp")]
    PasswordOtp,
    /// An OTP from one of the user's HOTP/TOTP tokens, preceded (or followed) by the token's
    /// PIN when the token has one and this is the first factor of the login.
    #[serde(rename = "soft_otp", alias = "otp", alias = "totp")]
    SoftOtp,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PasswordOtp => "password+otp",
            Method::SoftOtp => "soft_otp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// The method needs one of the user's OTP tokens.
    pub fn uses_otp(self) -> bool {
        matches!(self, Method::PasswordOtp | Method::SoftOtp)
    }
}

/// One step of an application's chain. Several methods are alternatives: the factor is proven by
/// any of them that the user can use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub methods: Vec<Method>,
    /// Inject this factor when the login's risk is Low or Moderate (risk analysis, later).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub risk: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: AppName,
    #[serde(default, rename = "type")]
    pub kind: AppKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub factors: Vec<Factor>,
}

impl Application {
    /// Problems an administrator must fix before the application can be saved.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(self.name.as_str()) {
            errs.push(format!("name: {e}"));
        }
        if self.factors.is_empty() {
            errs.push("factors: an application needs at least one factor".into());
        }
        if self.factors.len() > 8 {
            errs.push("factors: at most 8 factors".into());
        }
        for (i, f) in self.factors.iter().enumerate() {
            if f.methods.is_empty() {
                errs.push(format!("factors[{i}]: a factor needs at least one method"));
            }
        }
        errs
    }
}

/// A realm: an ordered list of user sources searched for a login name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Realm {
    pub name: RealmName,
    pub sources: Vec<SourceName>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Realm {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(self.name.as_str()) {
            errs.push(format!("name: {e}"));
        }
        if self.sources.is_empty() {
            errs.push("sources: a realm needs at least one user source".into());
        }
        errs
    }
}

/// Where users live. LDAP/Active Directory sources are added by the directory issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSourceKind {
    /// Users kept in Tessera's own store.
    Local,
}

impl UserSourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSourceKind::Local => "local",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSourceDef {
    pub name: SourceName,
    #[serde(rename = "type")]
    pub kind: UserSourceKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl UserSourceDef {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(self.name.as_str()) {
            errs.push(format!("name: {e}"));
        }
        errs
    }
}

/// Names of configuration objects: 1–64 characters of letters, digits, `-`, `_` and `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "'{name}' may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_accept_the_seed_names() {
        assert_eq!(Method::parse("ldap"), Some(Method::Password));
        assert_eq!(Method::parse("local"), Some(Method::Password));
        assert_eq!(Method::parse("ldap+otp"), Some(Method::PasswordOtp));
        assert_eq!(Method::parse("soft_otp"), Some(Method::SoftOtp));
        assert_eq!(Method::parse("carrier_pigeon"), None);
    }

    #[test]
    fn source_def_round_trips_with_type_tag() {
        let def: UserSourceDef =
            serde_json::from_str(r#"{"name":"local","type":"local"}"#).unwrap();
        assert_eq!(def.kind, UserSourceKind::Local);
        let back = serde_json::to_value(&def).unwrap();
        assert_eq!(back["type"], "local");
    }

    #[test]
    fn application_problems() {
        let app = Application {
            name: AppName::from("bad name"),
            kind: AppKind::Normal,
            description: String::new(),
            factors: vec![],
        };
        assert_eq!(app.problems().len(), 2);
    }
}
