//! RADIUS clients: the network access servers (VPN concentrators, firewalls, switches, routers,
//! wireless controllers) that ask Tessera to authenticate their users, with the rules that pick
//! the application for a request and the attributes put into an Access-Accept.

use crate::ids::AppName;
use crate::model::User;
use crate::model::app::check_name;
use crate::netmatch::parse_net;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::IpAddr;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    #[default]
    Vpn,
    Firewall,
    Switch,
    Router,
    WirelessController,
    Other,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Vpn => "vpn",
            DeviceType::Firewall => "firewall",
            DeviceType::Switch => "switch",
            DeviceType::Router => "router",
            DeviceType::WirelessController => "wireless_controller",
            DeviceType::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.replace('-', "_"))).ok()
    }
}

/// A shared secret in memory: never printed by `Debug`, wiped when dropped. Serialised as its
/// text (for files the administrator asked to contain it); at rest it is sealed by the store.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Zeroizing<String>);

impl SharedSecret {
    pub fn new(s: impl Into<String>) -> Self {
        SharedSecret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn problems(&self) -> Vec<String> {
        let s = self.expose();
        let mut errs = Vec::new();
        if s.chars().count() < 8 {
            errs.push(
                "secret: use at least 8 characters (16 or more random ones are recommended)".into(),
            );
        }
        if s.len() > 128 {
            errs.push("secret: at most 128 octets".into());
        }
        if s.chars().any(|c| c.is_control()) {
            errs.push("secret: control characters are not allowed".into());
        }
        errs
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(***)")
    }
}

impl Serialize for SharedSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SharedSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SharedSecret::new(String::deserialize(d)?))
    }
}

/// A network a NAS may send from: `10.0.0.1` (one host) or `10.0.0.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net(pub IpNet);

impl Serialize for Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            s.serialize_str(&self.0.addr().to_string())
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_net(&s).map(Net).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_net(s).map(Net)
    }
}

/// A first-match rule choosing the application of a request. Every condition given must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRule {
    /// A request attribute by dictionary name (`NAS-Identifier`, `Called-Station-Id`, …) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// … whose value matches this pattern (`*` and `?` wildcards, case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The NAS's address is in this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Net>,
    /// The end user's address (Framed-IP-Address or Calling-Station-Id) is in this network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<Net>,
    pub application: AppName,
}

impl AppRule {
    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.attribute.is_some() != self.matches.is_some() {
            errs.push("'attribute' and 'matches' go together".into());
        }
        if self.attribute.is_none() && self.source.is_none() && self.client_ip.is_none() {
            errs.push("a rule needs a condition: attribute + matches, source or client_ip".into());
        }
        errs
    }

    /// Whether the rule holds for a request. `attr` looks a request attribute up by name.
    pub fn holds(
        &self,
        attr: &dyn Fn(&str) -> Option<String>,
        source: IpAddr,
        client_ip: Option<IpAddr>,
    ) -> bool {
        if let (Some(name), Some(pattern)) = (&self.attribute, &self.matches) {
            match attr(name) {
                Some(v) if wildcard_match(pattern, &v) => {}
                _ => return false,
            }
        }
        if let Some(net) = &self.source
            && !net.0.contains(&source)
        {
            return false;
        }
        if let Some(net) = &self.client_ip
            && !client_ip.is_some_and(|ip| net.0.contains(&ip))
        {
            return false;
        }
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplyMode {
    /// When the user attribute meets the condition, send a fixed value.
    #[default]
    Static,
    /// Copy the user attribute's value(s) into the reply attribute.
    Dynamic,
}

/// A reply-message rule: puts an attribute into the Access-Accept of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRule {
    /// Lower first. For each reply attribute, the first rule that matches decides.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub mode: ReplyMode,
    /// The user attribute read: `groups` (alias `memberOf`), `username`, `email` (`mail`),
    /// `given_name`, `surname`, `display_name`, `phone`, `manager`, `realm`, `source`, or a
    /// directory attribute an LDAP source reads (`attributes.extra`: `department`, ...).
    pub user_attribute: String,
    /// Static: the condition on the user attribute (any of its values). None: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The reply attribute, by dictionary name (`Fortinet-Group-Name`, `Class`, …).
    pub reply_attribute: String,
    /// Static: the value sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl ReplyRule {
    fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !USER_ATTRIBUTES.contains(&self.user_attribute.to_ascii_lowercase().as_str())
            && !crate::model::ldap::is_attribute_name(&self.user_attribute)
        {
            errs.push(format!(
                "user_attribute '{}' is neither one of {} nor a directory attribute name",
                self.user_attribute,
                USER_ATTRIBUTES.join(", ")
            ));
        }
        let conditions = [&self.equals, &self.contains, &self.matches]
            .iter()
            .filter(|c| c.is_some())
            .count();
        match self.mode {
            ReplyMode::Static => {
                if self.value.is_none() {
                    errs.push("a static rule needs a 'value'".into());
                }
                if conditions > 1 {
                    errs.push("use one of 'equals', 'contains' or 'matches'".into());
                }
            }
            ReplyMode::Dynamic => {
                if self.value.is_some() || conditions > 0 {
                    errs.push(
                        "a dynamic rule copies the user attribute: no 'value' or condition".into(),
                    );
                }
            }
        }
        errs
    }

    /// The values this rule puts into the reply for `user` (empty when it does not match).
    pub fn values_for(&self, user: &User, realm: &str) -> Vec<String> {
        let have = user_attribute(user, realm, &self.user_attribute);
        match self.mode {
            ReplyMode::Dynamic => have
                .into_iter()
                .filter(|v| !v.is_empty())
                .take(16)
                .collect(),
            ReplyMode::Static => {
                let hit = if let Some(want) = &self.equals {
                    have.iter().any(|v| v.eq_ignore_ascii_case(want))
                } else if let Some(part) = &self.contains {
                    let part = part.to_lowercase();
                    have.iter().any(|v| v.to_lowercase().contains(&part))
                } else if let Some(pattern) = &self.matches {
                    have.iter().any(|v| wildcard_match(pattern, v))
                } else {
                    true
                };
                match (&self.value, hit) {
                    (Some(v), true) => vec![v.clone()],
                    _ => Vec::new(),
                }
            }
        }
    }
}

/// The user attributes reply rules can read.
pub const USER_ATTRIBUTES: [&str; 15] = [
    "username",
    "samaccountname",
    "groups",
    "memberof",
    "email",
    "mail",
    "given_name",
    "givenname",
    "surname",
    "sn",
    "display_name",
    "phone",
    "manager",
    "realm",
    "source",
];

/// The values of a user attribute by name.
pub fn user_attribute(user: &User, realm: &str, name: &str) -> Vec<String> {
    let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
    match name.to_ascii_lowercase().as_str() {
        "username" | "samaccountname" => vec![user.username.clone()],
        "groups" | "memberof" => user.groups.clone(),
        "email" | "mail" => one(&user.email),
        "given_name" | "givenname" => one(&user.given_name),
        "surname" | "sn" => one(&user.surname),
        "display_name" => {
            let parts: Vec<&str> = [&user.given_name, &user.surname]
                .iter()
                .filter_map(|p| p.as_deref())
                .collect();
            if parts.is_empty() {
                vec![user.username.clone()]
            } else {
                vec![parts.join(" ")]
            }
        }
        "phone" => one(&user.phone),
        "manager" => one(&user.manager),
        "realm" => vec![realm.to_string()],
        "source" => vec![user.source.0.clone()],
        // What a directory source read (its `attributes.extra`).
        other => user.attributes.get(other).cloned().unwrap_or_default(),
    }
}

/// The texts shown on the NAS's login screen (Reply-Message); empty for none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplyTexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    /// Replaces the engine's prompt ("Please enter the OTP from your authenticator").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A RADIUS client (NAS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClient {
    pub name: String,
    #[serde(default)]
    pub device_type: DeviceType,
    /// The addresses the NAS sends from: hosts or networks.
    pub nas_ip: Vec<Net>,
    /// The NAS-Identifier it sends; tells apart NASes behind one address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nas_identifier: Option<String>,
    /// The shared secret. Left out of exports unless asked for; left out of a file applied to an
    /// existing client, the stored one is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SharedSecret>,
    /// The application its users log in to; none: the `validate_application` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<AppName>,
    /// First-match rules choosing another application for some requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_rules: Vec<AppRule>,
    /// Drop requests without a valid Message-Authenticator (BlastRADIUS, CVE-2024-3596). Turn
    /// off only for legacy equipment that cannot send one.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub require_message_authenticator: bool,
    /// Requests per second accepted from this client; beyond it requests are dropped (the NAS
    /// retransmits). None: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_rules: Vec<ReplyRule>,
    #[serde(default, skip_serializing_if = "is_default_texts")]
    pub messages: ReplyTexts,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn is_default_texts(t: &ReplyTexts) -> bool {
    *t == ReplyTexts::default()
}

impl RadiusClient {
    /// Problems an administrator must fix before the client can be saved (references to
    /// applications and reply attributes are checked against the whole configuration).
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(&self.name) {
            errs.push(format!("name: {e}"));
        }
        if self.nas_ip.is_empty() {
            errs.push("nas_ip: give the address or network (CIDR) the NAS sends from".into());
        }
        if let Some(id) = &self.nas_identifier
            && (id.is_empty() || id.len() > 253)
        {
            errs.push("nas_identifier: 1 to 253 characters".into());
        }
        if let Some(s) = &self.secret {
            errs.extend(s.problems());
        }
        if self.rate_limit == Some(0) {
            errs.push(
                "rate_limit: at least 1 request per second (leave it out for no limit)".into(),
            );
        }
        for (i, r) in self.application_rules.iter().enumerate() {
            errs.extend(
                r.problems()
                    .into_iter()
                    .map(|e| format!("application_rules[{i}]: {e}")),
            );
        }
        for (i, r) in self.reply_rules.iter().enumerate() {
            errs.extend(
                r.problems()
                    .into_iter()
                    .map(|e| format!("reply_rules[{i}]: {e}")),
            );
        }
        for (field, text) in [
            ("accept", &self.messages.accept),
            ("reject", &self.messages.reject),
            ("challenge", &self.messages.challenge),
        ] {
            if text.as_ref().is_some_and(|t| t.len() > 253) {
                errs.push(format!("messages.{field}: at most 253 octets"));
            }
        }
        errs
    }

    /// How well this client matches a packet from `source` naming `nas_identifier`: `None` when
    /// the address is not its own; otherwise higher is more specific.
    pub fn match_score(&self, source: IpAddr, nas_identifier: Option<&str>) -> Option<u32> {
        let prefix = self
            .nas_ip
            .iter()
            .filter(|n| n.0.contains(&source))
            .map(|n| u32::from(n.0.prefix_len()))
            .max()?;
        let id_bonus = match (&self.nas_identifier, nas_identifier) {
            (Some(mine), Some(theirs)) if mine == theirs => 1000,
            (Some(_), _) => 0,
            (None, _) => 500,
        };
        Some(id_bonus + prefix)
    }

    /// The application for a request: the first rule that holds, else the client's own.
    pub fn choose_application(
        &self,
        attr: &dyn Fn(&str) -> Option<String>,
        source: IpAddr,
        client_ip: Option<IpAddr>,
    ) -> Option<AppName> {
        self.application_rules
            .iter()
            .find(|r| r.holds(attr, source, client_ip))
            .map(|r| r.application.clone())
            .or_else(|| self.application.clone())
    }

    /// The reply attributes (name, value) for an accepted user: rules in priority order, the
    /// first matching rule of each reply attribute deciding it.
    pub fn reply_attributes(&self, user: &User, realm: &str) -> Vec<(String, String)> {
        let mut rules: Vec<&ReplyRule> = self.reply_rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        let mut decided: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for r in rules {
            let key = r.reply_attribute.to_ascii_lowercase();
            if decided.contains(&key) {
                continue;
            }
            let values = r.values_for(user, realm);
            if values.is_empty() {
                continue;
            }
            decided.push(key);
            out.extend(values.into_iter().map(|v| (r.reply_attribute.clone(), v)));
        }
        out
    }
}

/// The sealing context of a client's secret: the sealed value opens for this client only.
fn secret_context(name: &str) -> String {
    format!("radius_client:{}", name.to_lowercase())
}

/// The stored form of a client: its secret sealed under the master key (`secret_sealed`).
pub fn client_to_stored(
    store: &dyn crate::store::Store,
    client: &RadiusClient,
) -> Result<serde_json::Value, String> {
    let mut body = serde_json::to_value(client).map_err(|e| e.to_string())?;
    let Some(obj) = body.as_object_mut() else {
        return Err("a client is an object".into());
    };
    obj.remove("secret");
    let secret = client
        .secret
        .as_ref()
        .ok_or_else(|| format!("RADIUS client '{}' has no secret", client.name))?;
    let sealed = store.seal_secret(secret.expose().as_bytes(), &secret_context(&client.name));
    obj.insert(
        "secret_sealed".into(),
        serde_json::Value::String(data_encoding::BASE64.encode(&sealed)),
    );
    Ok(body)
}

/// Reads a stored client and opens its secret.
pub fn client_from_stored(
    store: &dyn crate::store::Store,
    mut body: serde_json::Value,
) -> Result<RadiusClient, String> {
    let sealed = body
        .as_object_mut()
        .and_then(|o| o.remove("secret_sealed"))
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or("no sealed secret")?;
    let mut client: RadiusClient = serde_json::from_value(body).map_err(|e| e.to_string())?;
    let raw = data_encoding::BASE64
        .decode(sealed.as_bytes())
        .map_err(|e| format!("sealed secret: {e}"))?;
    let plain = store
        .open_secret(&raw, &secret_context(&client.name))
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(plain.to_vec()).map_err(|_| "secret is not UTF-8".to_string())?;
    client.secret = Some(SharedSecret::new(text));
    Ok(client)
}

/// `*` matches any run of characters, `?` one; case-insensitive.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SourceName, UserId};

    fn user() -> User {
        User {
            source: SourceName::from("local"),
            id: UserId::from("1"),
            username: "alice".into(),
            given_name: Some("Alice".into()),
            surname: Some("Liddell".into()),
            email: Some("alice@example.org".into()),
            phone: None,
            manager: None,
            groups: vec![
                "CN=VPN-Admins,OU=Groups,DC=example,DC=org".into(),
                "staff".into(),
            ],
            enabled: true,
            expires_at: None,
            attributes: Default::default(),
        }
    }

    fn client(toml_like: serde_json::Value) -> RadiusClient {
        serde_json::from_value(toml_like).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("vpn-*", "VPN-Berlin"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("vpn-*", "wifi-1"));
        assert!(wildcard_match("*admins*", "cn=vpn-admins,ou=x"));
    }

    #[test]
    fn reply_rules_first_match_per_attribute() {
        let c = client(serde_json::json!({
            "name": "fw", "nas_ip": ["10.0.0.1"],
            "reply_rules": [
                {"priority": 20, "user_attribute": "groups", "equals": "staff",
                 "reply_attribute": "Fortinet-Group-Name", "value": "Staff"},
                {"priority": 10, "user_attribute": "memberOf", "contains": "VPN-Admins",
                 "reply_attribute": "Fortinet-Group-Name", "value": "Admin"},
                {"priority": 30, "mode": "dynamic", "user_attribute": "mail",
                 "reply_attribute": "Class"},
                {"priority": 40, "user_attribute": "groups", "equals": "nobody",
                 "reply_attribute": "Filter-Id", "value": "never"}
            ]
        }));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(
            c.reply_attributes(&user(), "default"),
            vec![
                ("Fortinet-Group-Name".to_string(), "Admin".to_string()),
                ("Class".to_string(), "alice@example.org".to_string()),
            ]
        );
    }

    #[test]
    fn problems_are_all_reported() {
        let c = client(serde_json::json!({
            "name": "bad name", "nas_ip": [], "secret": "short", "rate_limit": 0,
            "reply_rules": [{"user_attribute": "shoe size!", "reply_attribute": "Class"}],
            "application_rules": [{"application": "x"}]
        }));
        let p = c.problems();
        assert_eq!(p.len(), 7, "{p:?}");
    }

    #[test]
    fn client_matching_prefers_identifier_then_longest_prefix() {
        let wide = client(serde_json::json!({"name": "wide", "nas_ip": ["10.0.0.0/8"]}));
        let narrow = client(serde_json::json!({"name": "narrow", "nas_ip": ["10.1.0.0/16"]}));
        let named = client(
            serde_json::json!({"name": "named", "nas_ip": ["10.0.0.0/8"], "nas_identifier": "fw2"}),
        );
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(narrow.match_score(ip, None) > wide.match_score(ip, None));
        assert!(named.match_score(ip, Some("fw2")) > narrow.match_score(ip, Some("fw2")));
        assert!(named.match_score(ip, Some("fw1")) < wide.match_score(ip, Some("fw1")));
        assert_eq!(wide.match_score("192.168.0.1".parse().unwrap(), None), None);
    }

    #[test]
    fn application_rules_pick_first_match() {
        let c = client(serde_json::json!({
            "name": "c", "nas_ip": ["10.0.0.0/8"], "application": "vpn",
            "application_rules": [
                {"attribute": "NAS-Identifier", "matches": "wifi-*", "application": "wifi"},
                {"source": "10.9.0.0/16", "application": "lab"}
            ]
        }));
        let attrs = |name: &str| (name == "NAS-Identifier").then(|| "WIFI-3".to_string());
        let none = |_: &str| None;
        let src: IpAddr = "10.9.1.1".parse().unwrap();
        let other: IpAddr = "10.1.1.1".parse().unwrap();
        assert_eq!(
            c.choose_application(&attrs, other, None),
            Some(AppName::from("wifi"))
        );
        assert_eq!(
            c.choose_application(&none, src, None),
            Some(AppName::from("lab"))
        );
        assert_eq!(
            c.choose_application(&none, other, None),
            Some(AppName::from("vpn"))
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = client(
            serde_json::json!({"name": "c", "nas_ip": ["10.0.0.1"], "secret": "s3cr3t-s3cr3t"}),
        );
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
