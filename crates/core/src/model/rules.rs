//! First-match rules on the user: which application a login goes to, and which method proves a
//! factor. A condition names a user attribute (`groups`, `memberOf`, `username`, `mail`, a
//! directory attribute such as `department`, ...) and a pattern; it holds when any of the
//! attribute's values matches.

use crate::ids::{AppName, SourceName};
use crate::model::client::{user_attribute, wildcard_match};
use crate::model::{Method, User};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// A value pattern: case-insensitive text with `*` and `?` wildcards matching the whole value,
/// or `regex:EXPR`, a case-insensitive regular expression searched in the value (anchor it
/// with `^...$` to match whole values).
#[derive(Clone)]
pub struct Pattern {
    text: String,
    regex: Option<Arc<regex::Regex>>,
}

/// The prefix of a regular-expression pattern.
pub const REGEX_PREFIX: &str = "regex:";

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("a pattern may not be empty (use * for any value)".into());
        }
        if text.len() > 1024 {
            return Err("a pattern is at most 1024 characters long".into());
        }
        let regex = match text.strip_prefix(REGEX_PREFIX) {
            Some(expr) => Some(Arc::new(
                regex::RegexBuilder::new(expr)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("regular expression '{expr}': {e}"))?,
            )),
            None => None,
        };
        Ok(Pattern {
            text: text.to_string(),
            regex,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, value: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(value),
            None => wildcard_match(&self.text, value),
        }
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pattern::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A condition on the user of a login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Only users of this user source (the seeds' "auth profile" of a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceName>,
    /// The user attribute: `groups` (group names), `memberOf` (group DNs and names),
    /// `username`, `mail`, `phone`, `manager`, `realm`, `source`, or any attribute a directory
    /// user source reads (`department`, `title`, ...).
    pub attribute: String,
    /// Wildcards (`*`, `?`) or `regex:EXPR`; case-insensitive.
    pub value: Pattern,
}

impl Condition {
    pub fn holds(&self, user: &User, realm: &str) -> bool {
        if let Some(s) = &self.source
            && !s.0.eq_ignore_ascii_case(user.source.as_str())
        {
            return false;
        }
        values_of(user, realm, &self.attribute)
            .iter()
            .any(|v| self.value.matches(v))
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let a = &self.attribute;
        if a.is_empty()
            || a.len() > 64
            || !a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ';'))
        {
            errs.push(format!(
                "attribute '{a}': 1 to 64 letters, digits, '-', '_', '.' or ';'"
            ));
        }
        errs
    }
}

/// The values of a user attribute for rules: the well-known names first (see
/// [`user_attribute`]), then what a directory source read. `memberOf` gives group DNs and
/// names.
pub fn values_of(user: &User, realm: &str, attribute: &str) -> Vec<String> {
    let lower = attribute.to_ascii_lowercase();
    let mut values = user_attribute(user, realm, &lower);
    if let Some(extra) = user.attributes.get(&lower) {
        for v in extra {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
    }
    values
}

/// Sends users who match to another application (checked once the user is known, on the first
/// leg of a login; first match wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(flatten)]
    pub when: Condition,
    pub application: AppName,
}

/// Picks the method of a factor for users who match (first match wins).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodRule {
    #[serde(flatten)]
    pub when: Condition,
    pub method: Method,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;
    use std::collections::BTreeMap;

    fn user() -> User {
        let mut attributes = BTreeMap::new();
        attributes.insert("department".into(), vec!["Network Operations".into()]);
        attributes.insert(
            "memberof".into(),
            vec!["cn=vpn-admins,ou=groups,dc=example,dc=org".into()],
        );
        User {
            source: SourceName::from("corp"),
            id: UserId::from("1"),
            username: "alice".into(),
            given_name: None,
            surname: None,
            email: Some("alice@example.org".into()),
            phone: None,
            manager: None,
            groups: vec!["vpn-admins".into(), "staff".into()],
            enabled: true,
            expires_at: None,
            attributes,
        }
    }

    fn cond(attribute: &str, value: &str) -> Condition {
        Condition {
            source: None,
            attribute: attribute.into(),
            value: Pattern::parse(value).unwrap(),
        }
    }

    #[test]
    fn wildcards_and_regexes_match_any_value_case_insensitively() {
        let u = user();
        assert!(cond("groups", "VPN-*").holds(&u, "r"));
        assert!(cond("memberOf", "cn=vpn-admins,*").holds(&u, "r"));
        assert!(cond("memberOf", "staff").holds(&u, "r"));
        assert!(cond("department", "regex:^network").holds(&u, "r"));
        assert!(cond("mail", "*@example.org").holds(&u, "r"));
        assert!(!cond("groups", "vpn").holds(&u, "r"));
        assert!(!cond("department", "regex:^sales$").holds(&u, "r"));
        assert!(!cond("title", "*").holds(&u, "r"), "absent attribute");
    }

    #[test]
    fn a_source_restriction_applies() {
        let mut c = cond("groups", "*");
        c.source = Some(SourceName::from("other"));
        assert!(!c.holds(&user(), "r"));
        c.source = Some(SourceName::from("CORP"));
        assert!(c.holds(&user(), "r"));
    }

    #[test]
    fn bad_patterns_are_refused_when_read() {
        assert!(Pattern::parse("regex:(").is_err());
        assert!(Pattern::parse("").is_err());
        let r: Result<MethodRule, _> =
            serde_json::from_str(r#"{"attribute":"groups","value":"regex:[","method":"password"}"#);
        assert!(r.is_err());
        let r: MethodRule =
            serde_json::from_str(r#"{"attribute":"groups","value":"vpn-*","method":"ldap+otp"}"#)
                .unwrap();
        assert_eq!(r.method, Method::PasswordOtp);
        assert_eq!(
            serde_json::to_value(&r).unwrap()["value"],
            serde_json::json!("vpn-*")
        );
    }
}
