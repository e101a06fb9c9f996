//! Applications (authentication profiles), realms and user-source definitions: the declarative
//! configuration objects an administrator manages.

use crate::ids::{AppName, RealmName, SourceName};
use crate::model::ldap::LdapProfile;
use crate::model::rules::{MethodRule, Route};
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
    /// A code sent by SMS to the user's phone (the `sms_delivery` setting says how).
    #[serde(rename = "sms_otp", alias = "sms")]
    SmsOtp,
    /// A code sent by mail to the user's address (the `mail_delivery` setting says how).
    #[serde(rename = "mail_otp", alias = "email_otp", alias = "email")]
    MailOtp,
    /// A single-use link by mail: the user's own click (or, in manager mode, the manager's)
    /// finishes the factor while the client polls (the seeds' "Email Link").
    #[serde(rename = "email_link")]
    EmailLink,
    /// The manager is told (information mode: the factor passes at once) or must approve the
    /// login with a link (approval mode) (the seeds' "Approved OTP").
    #[serde(rename = "approved_otp", alias = "manager_approval")]
    ApprovedOtp,
    /// A second password the user sets for the MFA step, kept by Tessera for users of any
    /// source (seed 003's MFA password). A later factor only.
    #[serde(rename = "mfa_password")]
    MfaPassword,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::PasswordOtp => "password+otp",
            Method::SoftOtp => "soft_otp",
            Method::SmsOtp => "sms_otp",
            Method::MailOtp => "mail_otp",
            Method::EmailLink => "email_link",
            Method::ApprovedOtp => "approved_otp",
            Method::MfaPassword => "mfa_password",
        }
    }

    /// The method is answered by a click on a link, while the client polls.
    pub fn is_link(self) -> bool {
        match self {
            Method::EmailLink | Method::ApprovedOtp => true,
            Method::Password
            | Method::PasswordOtp
            | Method::SoftOtp
            | Method::SmsOtp
            | Method::MailOtp
            | Method::MfaPassword => false,
        }
    }

    /// The budget a wrong answer counts against: something known (passwords) or something
    /// held (codes, links).
    pub fn fail_kind(self) -> crate::lockout::FailKind {
        use crate::lockout::FailKind;
        match self {
            Method::Password | Method::PasswordOtp | Method::MfaPassword => FailKind::Password,
            Method::SoftOtp
            | Method::SmsOtp
            | Method::MailOtp
            | Method::EmailLink
            | Method::ApprovedOtp => FailKind::Otp,
        }
    }

    /// The method checks the user's password (with the user source).
    pub fn checks_password(self) -> bool {
        match self {
            Method::Password | Method::PasswordOtp => true,
            Method::SoftOtp
            | Method::SmsOtp
            | Method::MailOtp
            | Method::EmailLink
            | Method::ApprovedOtp
            | Method::MfaPassword => false,
        }
    }

    /// The channel of a method that sends a code.
    pub fn channel(self) -> Option<crate::model::Channel> {
        match self {
            Method::SmsOtp => Some(crate::model::Channel::Sms),
            Method::MailOtp => Some(crate::model::Channel::Mail),
            Method::Password
            | Method::PasswordOtp
            | Method::SoftOtp
            | Method::EmailLink
            | Method::ApprovedOtp
            | Method::MfaPassword => None,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// The method needs one of the user's OTP tokens.
    pub fn uses_otp(self) -> bool {
        match self {
            Method::PasswordOtp | Method::SoftOtp => true,
            Method::Password
            | Method::SmsOtp
            | Method::MailOtp
            | Method::EmailLink
            | Method::ApprovedOtp
            | Method::MfaPassword => false,
        }
    }
}

impl Application {
    /// A user without any token skips the factors that need one (`pass_on_no_token`,
    /// `passthru`).
    pub fn rollout(&self) -> bool {
        self.pass_on_no_token || self.passthru
    }
}

/// One step of an application's chain. Several methods are alternatives: the factor is proven by
/// any of them that the user can use. With `rules`, the first rule that matches the user picks
/// the one method used; a user no rule matches cannot pass the factor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Method>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MethodRule>,
    /// Inject this factor when the login's risk is Low or Moderate (risk analysis, later).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub risk: bool,
    /// Only users who can answer it are asked (who have an OTP token, a phone, a mail address
    /// or an MFA password, as its methods need); others skip it — seed 003's MFA role, where
    /// users not enrolled for MFA get a USER token at once. The `forced_mfa` setting asks
    /// everyone. Not for the first factor.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub if_enrolled: bool,
}

impl Factor {
    /// Every way to answer the factor needs one of the user's tokens.
    pub fn needs_token(&self) -> bool {
        let mut methods = self.all_methods().peekable();
        methods.peek().is_some() && methods.all(Method::uses_otp)
    }

    /// A factor proven by any of `methods`.
    pub fn of(methods: Vec<Method>) -> Self {
        Factor {
            methods,
            rules: Vec::new(),
            risk: false,
            if_enrolled: false,
        }
    }

    /// Every method the factor can use, for any user.
    pub fn all_methods(&self) -> impl Iterator<Item = Method> + '_ {
        self.methods
            .iter()
            .copied()
            .chain(self.rules.iter().map(|r| r.method))
    }

    /// The methods `user` proves this factor with: the first matching rule's, or all methods
    /// when there are no rules. Empty when rules exist and none matches.
    pub fn methods_for(&self, user: &crate::model::User, realm: &str) -> Vec<Method> {
        if self.rules.is_empty() {
            return self.methods.clone();
        }
        self.rules
            .iter()
            .find(|r| r.when.holds(user, realm))
            .map(|r| vec![r.method])
            .unwrap_or_default()
    }
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
    /// Users who match a route log in with the route's application instead (first match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Minutes after its last sign-in that a web SSO session still serves this application
    /// (default and upper bound: the `sso_session_minutes` setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_session_minutes: Option<u32>,
    /// Minutes a web SSO session may go unused and still serve this application (default and
    /// upper bound: the `sso_idle_minutes` setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_idle_minutes: Option<u32>,
    /// How the login page looks for this application's users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<crate::model::Branding>,
    /// Only users of these realms sign in to the application (checked before any factor);
    /// empty: users of every realm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub realms: Vec<RealmName>,
    /// `/validate/*` requests for the application must carry an API client's access token
    /// (scope `validate`) as bearer, as seed 000's agents (Windows logon, ADFS, PAM) send it.
    /// Off: privacyIDEA clients, which send none, call as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_client_token: bool,
    /// privacyIDEA's `challenge_response` policy for the first factor: the token PIN alone (for
    /// `password+otp`, the user's password alone) asks for the code in a second round, for
    /// each token whose PIN it is; the PIN and the code in one field still pass in one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub challenge_response: bool,
    /// A rollout policy (privacyIDEA's `passOnNoToken`): a user who has no token at all skips
    /// the factors that need one, and passes when none is left. Audited when it lets someone in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass_on_no_token: bool,
    /// A rollout policy (privacyIDEA's `passthru`): a user who has no token at all proves a
    /// first factor that needs one with the user store's password instead, and skips later
    /// factors that need one. Audited when it lets someone in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passthru: bool,
    /// A rollout policy (privacyIDEA's `passOnNoUser`), dangerous: a name no user source knows
    /// passes at the validate API and over RADIUS (never on the web pages or the OAuth API).
    /// Only for an application whose every factor needs a token, so that it skips no password
    /// check. Audited when it lets someone in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass_on_no_user: bool,
}

impl Application {
    /// Users of `realm` may sign in to the application.
    pub fn allows_realm(&self, realm: &str) -> bool {
        self.realms.is_empty() || self.realms.iter().any(|r| r.0.eq_ignore_ascii_case(realm))
    }

    /// Problems an administrator must fix before the application can be saved.
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(self.name.as_str()) {
            errs.push(format!("name: {e}"));
        }
        if self.factors.is_empty() {
            errs.push("factors: an application needs at least one factor".into());
        }
        if self.pass_on_no_user && !self.factors.iter().all(Factor::needs_token) {
            errs.push(
                "pass_on_no_user: only for an application whose every factor needs a token (soft_otp, password+otp): an unknown user would skip a password check"
                    .into(),
            );
        }
        if let Some(b) = &self.branding {
            errs.extend(b.problems());
        }
        if self.factors.len() > 8 {
            errs.push("factors: at most 8 factors".into());
        }
        for (i, f) in self.factors.iter().enumerate() {
            if f.methods.is_empty() && f.rules.is_empty() {
                errs.push(format!(
                    "factors[{i}]: a factor needs at least one method or rule"
                ));
            }
            if !f.methods.is_empty() && !f.rules.is_empty() {
                errs.push(format!(
                    "factors[{i}]: give 'methods' or 'rules' (each rule names its method), not both"
                ));
            }
            if i == 0 && f.if_enrolled {
                errs.push("factors[0]: if_enrolled is for the factors after the first".into());
            }
            if i == 0 && f.all_methods().any(|m| m == Method::MfaPassword) {
                errs.push(
                    "factors[0]: mfa_password is a second factor; the first proves who the user is"
                        .into(),
                );
            }
            for (j, r) in f.rules.iter().enumerate() {
                errs.extend(
                    r.when
                        .problems()
                        .into_iter()
                        .map(|e| format!("factors[{i}].rules[{j}]: {e}")),
                );
            }
        }
        for (key, v) in [
            ("sso_session_minutes", self.sso_session_minutes),
            ("sso_idle_minutes", self.sso_idle_minutes),
        ] {
            if v.is_some_and(|m| !(1..=525_600).contains(&m)) {
                errs.push(format!("{key}: from 1 to 525600 minutes"));
            }
        }
        for (j, r) in self.routes.iter().enumerate() {
            errs.extend(
                r.when
                    .problems()
                    .into_iter()
                    .map(|e| format!("routes[{j}]: {e}")),
            );
            if r.application == self.name {
                errs.push(format!(
                    "routes[{j}]: an application cannot route to itself"
                ));
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

/// Where users live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSourceKind {
    /// Users kept in Tessera's own store.
    Local,
    /// An LDAP directory or Active Directory (see [`LdapProfile`]).
    Ldap,
}

impl UserSourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSourceKind::Local => "local",
            UserSourceKind::Ldap => "ldap",
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
    /// The directory of an `ldap` source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ldap: Option<LdapProfile>,
}

impl UserSourceDef {
    pub fn local(name: &str) -> Self {
        UserSourceDef {
            name: SourceName::from(name),
            kind: UserSourceKind::Local,
            description: String::new(),
            ldap: None,
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(self.name.as_str()) {
            errs.push(format!("name: {e}"));
        }
        match (self.kind, &self.ldap) {
            (UserSourceKind::Local, Some(_)) => {
                errs.push("ldap: only an 'ldap' user source has a directory".into())
            }
            (UserSourceKind::Ldap, None) => {
                errs.push("ldap: an 'ldap' user source needs its [ldap] profile".into())
            }
            (UserSourceKind::Ldap, Some(p)) => {
                errs.extend(p.problems().into_iter().map(|e| format!("ldap.{e}")))
            }
            (UserSourceKind::Local, None) => {}
        }
        errs
    }
}

/// The sealing context of a user source's bind password: it opens for this source only.
fn bind_password_context(name: &str) -> String {
    format!("user_source:{}", name.to_lowercase())
}

/// The stored form of a user source: an LDAP bind password sealed under the master key
/// (`ldap.bind_password_sealed`).
pub fn source_to_stored(
    store: &dyn crate::store::Store,
    def: &UserSourceDef,
) -> Result<serde_json::Value, String> {
    let mut body = serde_json::to_value(def).map_err(|e| e.to_string())?;
    let password = def.ldap.as_ref().and_then(|l| l.bind_password.as_ref());
    if let (Some(ldap), Some(password)) = (
        body.get_mut("ldap").and_then(|l| l.as_object_mut()),
        password,
    ) {
        ldap.remove("bind_password");
        let sealed = store.seal_secret(
            password.expose().as_bytes(),
            &bind_password_context(def.name.as_str()),
        );
        ldap.insert(
            "bind_password_sealed".into(),
            serde_json::Value::String(data_encoding::BASE64.encode(&sealed)),
        );
    }
    Ok(body)
}

/// Reads a stored user source and opens its bind password.
pub fn source_from_stored(
    store: &dyn crate::store::Store,
    mut body: serde_json::Value,
) -> Result<UserSourceDef, String> {
    let sealed = body
        .get_mut("ldap")
        .and_then(|l| l.as_object_mut())
        .and_then(|l| l.remove("bind_password_sealed"));
    let mut def: UserSourceDef = serde_json::from_value(body).map_err(|e| e.to_string())?;
    if let (Some(sealed), Some(ldap)) = (sealed, def.ldap.as_mut()) {
        let raw = data_encoding::BASE64
            .decode(sealed.as_str().unwrap_or_default().as_bytes())
            .map_err(|e| format!("sealed bind password: {e}"))?;
        let plain = store
            .open_secret(&raw, &bind_password_context(def.name.as_str()))
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| "bind password is not UTF-8".to_string())?;
        ldap.bind_password = Some(crate::model::SharedSecret::new(text));
    }
    Ok(def)
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
            routes: vec![],
            sso_session_minutes: None,
            sso_idle_minutes: None,
            branding: None,
            realms: Vec::new(),
            require_client_token: false,
            challenge_response: false,
            pass_on_no_token: false,
            passthru: false,
            pass_on_no_user: false,
        };
        assert_eq!(app.problems().len(), 2);
    }
}
