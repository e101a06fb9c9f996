//! LDAP and Active Directory user-source profiles (the seed's "LDAP profile"): servers, TLS,
//! service account, where and how users and their groups are found, and which attributes mean
//! what. The directory crate connects with them; here they are only described and checked.

use crate::model::SharedSecret;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryType {
    /// Microsoft Active Directory (and Samba AD): `sAMAccountName`, `memberOf` with nested
    /// groups, `objectGUID`, `unicodePwd`.
    ActiveDirectory,
    /// OpenLDAP (and 389 DS, FreeIPA): `uid`, `groupOfNames`, `entryUUID`, Password Modify.
    #[serde(alias = "open_ldap")]
    Openldap,
    /// Any other LDAPv3 directory; set every field explicitly.
    #[default]
    Generic,
}

impl DirectoryType {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryType::ActiveDirectory => "active_directory",
            DirectoryType::Openldap => "openldap",
            DirectoryType::Generic => "generic",
        }
    }
}

/// Which directory attribute holds what. Unset fields take the directory type's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttributeMap {
    /// The stable id tokens are bound to (`objectGUID`, `entryUUID`); empty: the entry's DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
    /// The login name shown and stored (`sAMAccountName`, `uid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The manager's entry (a DN, as AD's `manager`) or login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// More attributes to read for rules (`department`, `title`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// Read the user's `memberOf` attribute (Active Directory; OpenLDAP with the memberof
    /// overlay). Nested groups are resolved with AD's in-chain matching rule.
    MemberOf,
    /// Search groups whose `member`/`uniqueMember` names the user's DN (or `memberUid` the
    /// login name). Nested groups are followed level by level.
    Search,
    /// Do not read groups.
    None,
}

/// How group membership is found. Unset fields take the directory type's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GroupMode>,
    /// Where groups are searched; default: the profile's base DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dn: Option<String>,
    /// Which entries are groups (search mode), e.g. `(objectClass=groupOfNames)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The attribute naming a group (`cn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_attribute: Option<String>,
    /// Include groups the user is in through other groups (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nested: Option<bool>,
}

fn default_timeout() -> u32 {
    5
}

fn default_connections() -> u32 {
    8
}

fn is_default_timeout(v: &u32) -> bool {
    *v == default_timeout()
}

fn is_default_connections(v: &u32) -> bool {
    *v == default_connections()
}

/// An LDAP or Active Directory profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapProfile {
    #[serde(default)]
    pub directory: DirectoryType,
    /// `ldap://host[:port]` or `ldaps://host[:port]`, tried in order: a server that fails is
    /// passed over for 30 seconds.
    pub servers: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starttls: bool,
    /// Trust only these CA certificates (PEM) for LDAPS/StartTLS, instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Like `ca_pem`, read from a file on each node when the profile loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Accept any server certificate. For tests only: anyone on the path can read passwords.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// The service account that searches users; none: anonymous search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// Sealed at rest under the master key; never shown by `export` or the admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_password: Option<SharedSecret>,
    pub base_dn: String,
    /// Which entries are users, e.g. `(objectClass=inetOrgPerson)`; default by directory type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_filter: Option<String>,
    /// Attributes compared with the login name (`sAMAccountName`, `userPrincipalName`, `mail`,
    /// `uid`); default by directory type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub login_attributes: Vec<String>,
    #[serde(default)]
    pub attributes: AttributeMap,
    #[serde(default)]
    pub groups: GroupConfig,
    /// Connect and per-operation timeout.
    #[serde(
        default = "default_timeout",
        skip_serializing_if = "is_default_timeout"
    )]
    pub timeout_seconds: u32,
    /// Connections to the directory at most (searches and user binds together).
    #[serde(
        default = "default_connections",
        skip_serializing_if = "is_default_connections"
    )]
    pub max_connections: u32,
}

impl LdapProfile {
    /// Problems an administrator must fix before the profile can be saved.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.servers.is_empty() {
            errs.push("servers: name at least one server (ldap://host or ldaps://host)".into());
        }
        if self.servers.len() > 16 {
            errs.push("servers: at most 16".into());
        }
        for s in &self.servers {
            let lower = s.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("ldaps://")
                .or_else(|| lower.strip_prefix("ldap://"));
            match rest {
                Some(r) if !r.is_empty() && !r.contains(['/', '?', ' ']) => {}
                _ => errs.push(format!(
                    "servers: '{s}' is not ldap://host[:port] or ldaps://host[:port]"
                )),
            }
            if self.starttls && lower.starts_with("ldaps://") {
                errs.push(format!(
                    "servers: '{s}' is already LDAPS; starttls is for ldap:// servers"
                ));
            }
        }
        let plain = !self.starttls
            && !self.servers.is_empty()
            && self
                .servers
                .iter()
                .all(|s| s.to_ascii_lowercase().starts_with("ldap://"));
        if plain && (self.ca_pem.is_some() || self.ca_file.is_some() || self.insecure_skip_verify) {
            errs.push(
                "ca_pem/ca_file/insecure_skip_verify: no effect on ldap:// servers without starttls; use ldaps:// or starttls = true"
                    .into(),
            );
        }
        if self.insecure_skip_verify && (self.ca_pem.is_some() || self.ca_file.is_some()) {
            errs.push("insecure_skip_verify: contradicts ca_pem/ca_file; choose one".into());
        }
        if self.ca_pem.is_some() && self.ca_file.is_some() {
            errs.push("ca_pem and ca_file: give one of them".into());
        }
        if let Some(pem) = &self.ca_pem
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            errs.push("ca_pem: no PEM certificate (-----BEGIN CERTIFICATE-----) found".into());
        }
        if self.base_dn.trim().is_empty() {
            errs.push("base_dn: required, e.g. dc=example,dc=org".into());
        }
        match (&self.bind_dn, &self.bind_password) {
            (Some(dn), _) if dn.trim().is_empty() => {
                errs.push("bind_dn: empty; leave it out for anonymous search".into())
            }
            (None, Some(_)) => errs.push("bind_password: given without bind_dn".into()),
            _ => {}
        }
        if let Some(p) = &self.bind_password
            && (p.expose().is_empty() || p.expose().chars().any(char::is_control))
        {
            errs.push("bind_password: empty or with control characters".into());
        }
        for (field, filter) in [
            ("user_filter", &self.user_filter),
            ("groups.filter", &self.groups.filter),
        ] {
            if let Some(f) = filter
                && let Err(e) = check_filter(f)
            {
                errs.push(format!("{field}: {e}"));
            }
        }
        let names = self
            .login_attributes
            .iter()
            .map(|a| ("login_attributes", a))
            .chain(
                [
                    ("attributes.unique_id", &self.attributes.unique_id),
                    ("attributes.username", &self.attributes.username),
                    ("attributes.given_name", &self.attributes.given_name),
                    ("attributes.surname", &self.attributes.surname),
                    ("attributes.mail", &self.attributes.mail),
                    ("attributes.phone", &self.attributes.phone),
                    ("attributes.manager", &self.attributes.manager),
                    ("groups.name_attribute", &self.groups.name_attribute),
                ]
                .into_iter()
                .filter_map(|(f, a)| a.as_ref().map(|a| (f, a))),
            )
            .chain(
                self.attributes
                    .extra
                    .iter()
                    .map(|a| ("attributes.extra", a)),
            );
        for (field, name) in names {
            if !is_attribute_name(name) {
                errs.push(format!(
                    "{field}: '{name}' is not an attribute name (letters, digits, '-', ';')"
                ));
            }
        }
        if self.login_attributes.len() > 8 {
            errs.push("login_attributes: at most 8".into());
        }
        if !(1..=120).contains(&self.timeout_seconds) {
            errs.push("timeout_seconds: from 1 to 120".into());
        }
        if !(1..=256).contains(&self.max_connections) {
            errs.push("max_connections: from 1 to 256".into());
        }
        errs
    }

    /// Every server is reached over TLS (LDAPS or StartTLS).
    pub fn encrypted(&self) -> bool {
        self.starttls
            || self
                .servers
                .iter()
                .all(|s| s.to_ascii_lowercase().starts_with("ldaps://"))
    }
}

/// An LDAP attribute description: a name or OID, with options (`;binary`).
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A filter an administrator wrote: parenthesised, balanced, no NUL.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let f = filter.trim();
    if !f.starts_with('(') || !f.ends_with(')') {
        return Err(format!("'{filter}' must be enclosed in parentheses"));
    }
    if f.contains('\0') || f.len() > 1024 {
        return Err("no NUL characters, at most 1024 characters".into());
    }
    let mut depth = 0i32;
    for c in f.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("'{filter}' has unbalanced parentheses"));
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("'{filter}' has unbalanced parentheses"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LdapProfile {
        serde_json::from_value(serde_json::json!({
            "directory": "openldap",
            "servers": ["ldap://127.0.0.1:389"],
            "base_dn": "dc=example,dc=org",
            "bind_dn": "cn=svc,dc=example,dc=org",
            "bind_password": "secret"
        }))
        .unwrap()
    }

    #[test]
    fn a_plain_profile_is_valid_and_defaults_fill_in() {
        let p = profile();
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        assert_eq!(p.timeout_seconds, 5);
        assert_eq!(p.max_connections, 8);
        assert!(!p.encrypted());
    }

    #[test]
    fn problems_are_all_reported() {
        let mut p = profile();
        p.servers = vec!["http://x".into(), "ldaps://dc1".into()];
        p.starttls = true;
        p.base_dn = " ".into();
        p.user_filter = Some("(objectClass=person".into());
        p.login_attributes = vec!["uid)(x".into()];
        p.timeout_seconds = 0;
        p.insecure_skip_verify = true;
        p.ca_pem = Some("nope".into());
        let errs = p.problems();
        for want in [
            "'http://x' is not",
            "already LDAPS",
            "base_dn",
            "user_filter",
            "login_attributes",
            "timeout_seconds",
            "insecure_skip_verify",
            "ca_pem",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<LdapProfile, _> = serde_json::from_value(serde_json::json!({
            "servers": ["ldap://x"], "base_dn": "dc=x", "bind_pasword": "typo"
        }));
        assert!(r.is_err());
    }
}
