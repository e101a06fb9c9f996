//! API clients (seed 000): programs that call Tessera's REST API with OAuth2 — agents (a
//! Windows logon provider, a PAM module, ADFS) with the client-credentials grant, and user
//! clients that sign users in with the password grant.

use crate::ids::AppName;
use crate::model::Net;
use crate::model::app::check_name;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ApiClientKind {
    /// A machine: client-credentials grant.
    #[default]
    Agent,
    /// Signs users in: password grant.
    User,
    /// An OpenID Connect relying party (a web application): users sign in on Tessera's login
    /// page, authorization code flow with PKCE.
    Oidc,
}

impl ApiClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiClientKind::Agent => "agent",
            ApiClientKind::User => "user",
            ApiClientKind::Oidc => "oidc",
        }
    }
}

/// The scopes an API client may be given.
pub const SCOPES: [&str; 3] = ["validate", "mfa", "introspect"];

fn default_lifetime() -> u32 {
    3600
}

fn is_default_lifetime(v: &u32) -> bool {
    *v == default_lifetime()
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClient {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The OAuth2 `client_id` (generated).
    pub client_id: String,
    #[serde(rename = "type", default)]
    pub kind: ApiClientKind,
    /// The application whose factor chain its logins go through (user clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<AppName>,
    /// What its tokens allow (`validate`, `mfa`, `introspect`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Addresses it may call from; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<Net>,
    /// Token requests per minute at most, per node (0: no limit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limit_per_minute: u32,
    #[serde(
        default = "default_lifetime",
        skip_serializing_if = "is_default_lifetime"
    )]
    pub token_lifetime_seconds: u32,
    /// SHA-256 (hex) of the client secret (256 random bits, shown once when generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Where an OIDC client's users are sent back to (exact match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// How an OIDC client's ID tokens are signed: `ES256` (default) or `RS256` (needs the key
    /// imported with `tessera oidc import-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_alg: Option<String>,
    /// Where an OIDC client takes logout tokens when a user's SSO session ends (OpenID Connect
    /// Back-Channel Logout 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// The CA certificates (PEM) the back-channel logout address's HTTPS certificate must
    /// chain to, instead of the system's (a relying party with a certificate of a private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_ca_pem: Option<String>,
    /// Where an OIDC client may send its users after they sign out at Tessera's `/logout`
    /// (OpenID Connect RP-Initiated Logout 1.0; exact match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// An OIDC client must send PKCE (S256) with every authorization request. On unless
    /// turned off (relying parties that send none, such as Apache mod_auth_openidc with its
    /// defaults, sign in with their client secret alone then).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub require_pkce: bool,
    /// A public OIDC client (a single-page or native application that cannot keep a secret):
    /// no secret; it proves the authorization code is its own with PKCE (S256), always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
}

impl ApiClient {
    /// The client was given `scope` (what its tokens allow: `validate` to check users'
    /// credentials — the password grant, `/oauth/otp/generate`, `/validate/*` with its token;
    /// `mfa` to answer later factors through `/oauth/mfa…`; `introspect`).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.granted_scopes().iter().any(|s| s == scope)
    }

    /// What the client was given: its scopes, or, when none are listed (clients made before
    /// scopes were enforced, files that name none), what its type needs — `validate` for
    /// agents, `validate` and `mfa` for user clients.
    pub fn granted_scopes(&self) -> Vec<String> {
        if !self.scopes.is_empty() {
            return self.scopes.clone();
        }
        Self::default_scopes(self.kind)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The scopes a client of `kind` gets when none are named.
    pub fn default_scopes(kind: ApiClientKind) -> &'static [&'static str] {
        match kind {
            ApiClientKind::Agent => &["validate"],
            ApiClientKind::User => &["validate", "mfa"],
            ApiClientKind::Oidc => &[],
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(&self.name) {
            errs.push(format!("name: {e}"));
        }
        if self.client_id.len() < 8
            || self.client_id.len() > 64
            || !self
                .client_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errs.push("client_id: 8 to 64 letters, digits, '-', '_' or '.'".into());
        }
        for s in &self.scopes {
            if !SCOPES.contains(&s.as_str()) {
                errs.push(format!("scopes: '{s}' is not one of {}", SCOPES.join(", ")));
            }
        }
        if !(60..=86_400).contains(&self.token_lifetime_seconds) {
            errs.push("token_lifetime_seconds: from 60 to 86400".into());
        }
        if matches!(self.kind, ApiClientKind::User | ApiClientKind::Oidc)
            && self.application.is_none()
        {
            errs.push("application: a user client signs users in through an application".into());
        }
        if self
            .id_token_alg
            .as_deref()
            .is_some_and(|a| !matches!(a, "ES256" | "RS256"))
        {
            errs.push("id_token_alg: ES256 or RS256".into());
        }
        if self.kind == ApiClientKind::Oidc && self.redirect_uris.is_empty() {
            errs.push("redirect_uris: an OIDC client needs at least one".into());
        }
        if let Some(uri) = &self.backchannel_logout_uri {
            if self.kind != ApiClientKind::Oidc {
                errs.push("backchannel_logout_uri: for OIDC clients".into());
            }
            if let Err(e) = check_redirect_uri(uri) {
                errs.push(format!("backchannel_logout_uri: '{uri}': {e}"));
            }
        }
        for uri in &self.redirect_uris {
            if let Err(e) = check_redirect_uri(uri) {
                errs.push(format!("redirect_uris: '{uri}': {e}"));
            }
        }
        for uri in &self.post_logout_redirect_uris {
            if self.kind != ApiClientKind::Oidc {
                errs.push("post_logout_redirect_uris: for OIDC clients".into());
            }
            if let Err(e) = check_redirect_uri(uri) {
                errs.push(format!("post_logout_redirect_uris: '{uri}': {e}"));
            }
        }
        if !self.require_pkce && self.kind != ApiClientKind::Oidc {
            errs.push("require_pkce: for OIDC clients".into());
        }
        if let Some(pem) = &self.backchannel_ca_pem {
            use rustls_pki_types::pem::PemObject;
            if self.backchannel_logout_uri.is_none() {
                errs.push("backchannel_ca_pem: for a client with a backchannel_logout_uri".into());
            }
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>();
            match certs {
                _ if pem.len() > 64 * 1024 => {
                    errs.push("backchannel_ca_pem: at most 64 KiB of certificates".into())
                }
                Ok(c) if !c.is_empty() => {}
                Ok(_) => errs.push(
                    "backchannel_ca_pem: no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                ),
                Err(e) => errs.push(format!("backchannel_ca_pem: not readable PEM: {e}")),
            }
        }
        if self.public {
            if self.kind != ApiClientKind::Oidc {
                errs.push("public: only OIDC clients may be public (the others authenticate with their secret)".into());
            }
            if !self.require_pkce {
                errs.push("require_pkce: a public client has no secret: PKCE is what proves its codes are its own".into());
            }
            if self.secret_hash.is_some() {
                errs.push("secret_hash: a public client has no secret".into());
            }
        }
        if let Some(h) = &self.secret_hash
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            errs.push("secret_hash: 64 hex digits (SHA-256)".into());
        }
        errs
    }

    /// The hash a secret is kept as.
    pub fn hash_secret(secret: &str) -> String {
        use sha2::{Digest, Sha256};
        data_encoding::HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
    }

    /// Whether `secret` is this client's (in constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let given = Self::hash_secret(secret);
        self.secret_hash
            .as_ref()
            .is_some_and(|h| subtle::ConstantTimeEq::ct_eq(h.as_bytes(), given.as_bytes()).into())
    }

    pub fn allows_ip(&self, ip: std::net::IpAddr) -> bool {
        self.allowed_ips.is_empty() || self.allowed_ips.iter().any(|n| n.0.contains(&ip))
    }
}

/// A redirect URI must be absolute, HTTPS (plain HTTP only to this machine), without a
/// fragment (RFC 6749 §3.1.2).
fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2000 || !uri.is_ascii() || uri.chars().any(|c| c.is_ascii_whitespace()) {
        return Err("at most 2000 ASCII characters, no spaces");
    }
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URL")?;
    if parsed.fragment().is_some() {
        return Err("no fragment");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("no user name or password in it");
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => return Err("no host"),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("https only (http only to 127.0.0.1, localhost or [::1])"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_problems() {
        let mut c: ApiClient = serde_json::from_value(serde_json::json!({
            "name": "pam", "client_id": "tc-0123456789", "type": "agent",
            "scopes": ["validate"], "allowed_ips": ["10.0.0.0/8"]
        }))
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        c.secret_hash = Some(ApiClient::hash_secret("s3cret"));
        assert!(c.secret_matches("s3cret") && !c.secret_matches("other"));
        assert!(c.allows_ip("10.1.2.3".parse().unwrap()));
        assert!(!c.allows_ip("192.168.0.1".parse().unwrap()));
        c.scopes = vec!["everything".into()];
        c.kind = ApiClientKind::User;
        assert_eq!(c.problems().len(), 2, "{:?}", c.problems());
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_without_user_info() {
        for good in [
            "https://app.example.org/cb",
            "https://app.example.org/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert_eq!(check_redirect_uri(good), Ok(()), "{good}");
        }
        for bad in [
            "http://app.example.org/cb",
            "http://127.0.0.1:1@evil.example/cb",
            "https://user:pw@app.example.org/cb",
            "https://app.example.org/cb#frag",
            "https://exämple.org/cb",
            "/relative",
            "javascript:alert(1)",
            "https://",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
