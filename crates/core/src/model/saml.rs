//! SAML 2.0 service providers (federation clients of seed 000): web applications — Microsoft
//! 365, Google Workspace, Salesforce, GitLab — that send their users to Tessera's login page
//! and get a signed assertion back.

use crate::ids::AppName;
use crate::model::app::check_name;
use serde::{Deserialize, Serialize};

/// The NameID formats offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NameIdFormat {
    /// The login name.
    #[default]
    Unspecified,
    /// The user's mail address.
    Email,
    /// A stable pseudonym for this service provider (never the login name).
    Persistent,
    /// A new random value at each sign-in.
    Transient,
}

impl NameIdFormat {
    pub fn urn(self) -> &'static str {
        match self {
            NameIdFormat::Unspecified => "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
            NameIdFormat::Email => "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            NameIdFormat::Persistent => "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            NameIdFormat::Transient => "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
        }
    }

    pub fn of_urn(urn: &str) -> Option<Self> {
        [
            NameIdFormat::Unspecified,
            NameIdFormat::Email,
            NameIdFormat::Persistent,
            NameIdFormat::Transient,
        ]
        .into_iter()
        .find(|f| f.urn() == urn)
    }
}

/// How the standard attributes are named in assertions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AttributeNames {
    /// Their OID names (`urn:oid:0.9.2342.19200300.100.1.3`) with NameFormat `uri` and the
    /// short name as FriendlyName: what Shibboleth, SimpleSAMLphp, pysaml2 and federations
    /// (eduGAIN, InCommon) map.
    #[default]
    Uri,
    /// Their short LDAP names (`mail`) with NameFormat `basic`, and `groups` for the groups:
    /// for SPs that match on those names (Apache mod_auth_mellon's `MELLON_mail`).
    Basic,
}

impl AttributeNames {
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeNames::Uri => "uri",
            AttributeNames::Basic => "basic",
        }
    }
}

/// One attribute sent to the service provider and where its values come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlAttribute {
    /// The attribute's name in the assertion (`mail`, `urn:oid:0.9.2342.19200300.100.1.3`,
    /// `http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress`, ...).
    pub name: String,
    /// `username`, `email`, `given_name`, `surname`, `display_name`, `phone`, `groups`,
    /// `principal_name` (`login@saml_scope`), or `attribute:<name>` for a directory attribute
    /// (lower case, as the user source read it).
    pub from: String,
    /// The FriendlyName sent beside the name (`mail` beside `urn:oid:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub friendly_name: Option<String>,
}

impl SamlAttribute {
    /// `urn:oasis:names:tc:SAML:2.0:attrname-format:uri` for a name that is a URI (`urn:oid:…`,
    /// `http://schemas…`), `basic` for a plain name.
    pub fn name_format(&self) -> &'static str {
        if self.name.contains(':') {
            ATTRNAME_URI
        } else {
            ATTRNAME_BASIC
        }
    }
}

pub const ATTRNAME_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
pub const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";

/// The attributes sent when an SP names none: (OID name, short name, source). Under `basic`
/// names the groups go as `groups`, under `uri` as `isMemberOf`; `eduPersonPrincipalName` only
/// with a `saml_scope`.
pub const STANDARD_ATTRIBUTES: [(&str, &str, &str); 7] = [
    ("urn:oid:0.9.2342.19200300.100.1.1", "uid", "username"),
    ("urn:oid:0.9.2342.19200300.100.1.3", "mail", "email"),
    ("urn:oid:2.5.4.42", "givenName", "given_name"),
    ("urn:oid:2.5.4.4", "sn", "surname"),
    (
        "urn:oid:2.16.840.1.113730.3.1.241",
        "displayName",
        "display_name",
    ),
    (
        "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
        "eduPersonPrincipalName",
        "principal_name",
    ),
    ("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "isMemberOf", "groups"),
];

pub const ATTRIBUTE_SOURCES: [&str; 8] = [
    "username",
    "email",
    "given_name",
    "surname",
    "display_name",
    "phone",
    "groups",
    "principal_name",
];

/// The user fields a NameID may come from (beside `attribute:<name>`).
pub const NAME_ID_SOURCES: [&str; 2] = ["username", "email"];

/// One of [`ATTRIBUTE_SOURCES`] or `attribute:<name>`.
pub fn is_attribute_source(from: &str) -> bool {
    ATTRIBUTE_SOURCES.contains(&from)
        || from
            .strip_prefix("attribute:")
            .is_some_and(|n| !n.is_empty())
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_uri(v: &AttributeNames) -> bool {
    *v == AttributeNames::Uri
}

/// A SAML service provider, bound to the application whose factor chain its users pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlServiceProvider {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The SP's entity ID (the Issuer of its requests, the Audience of our assertions).
    pub entity_id: String,
    pub application: AppName,
    /// Assertion consumer service URLs (HTTP-POST binding); the first is the default.
    pub acs_urls: Vec<String>,
    /// The metadata's `index` of each ACS URL, in the same order (what a request's
    /// `AssertionConsumerServiceIndex` names); none given: 0, 1, 2, … in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acs_indexes: Vec<u16>,
    /// Where the SP takes logout requests and responses (HTTP-Redirect binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_url: Option<String>,
    /// The SP's signing certificates (PEM): requests and logout messages are checked with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// The certificate (PEM) assertions are encrypted to, when `encrypt_assertions` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_certificate: Option<String>,
    #[serde(default)]
    pub name_id_format: NameIdFormat,
    /// Serve the NameID format a request asks for (transient, persistent, email) instead of
    /// refusing it: set when the SP's metadata names no format, as Apache mod_auth_mellon's
    /// generated metadata does; `name_id_format` then answers requests that ask for none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name_id_format_as_asked: bool,
    /// Where the NameID's value comes from — `username`, `email` or `attribute:<name>`
    /// (Microsoft 365: the ImmutableID, `attribute:ms-ds-consistencyguid`); none: as the
    /// format says (the login name, the mail, a pseudonym). Not with `transient`. The SP takes
    /// the value for the account, so it must be unique, stable and not the user's to change:
    /// names and phone numbers are not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_from: Option<String>,
    /// Attributes sent in the assertion; none given: `uid`, `mail`, `givenName`, `sn`,
    /// `displayName`, `eduPersonPrincipalName` (with a `saml_scope`) and the groups (the ones
    /// the user has), named as `attribute_names` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<SamlAttribute>,
    /// How the standard attributes are named: `uri` (OID names, the default) or `basic`.
    #[serde(default, skip_serializing_if = "is_uri")]
    pub attribute_names: AttributeNames,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub sign_assertions: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub sign_responses: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypt_assertions: bool,
    /// Sign-ins may start at Tessera (`/saml/init`: an unsolicited response, with the relay
    /// state the link names); off: only the SP's own requests are answered.
    #[serde(default, skip_serializing_if = "is_false")]
    pub idp_initiated: bool,
    /// Refuse authentication requests that are not signed with one of `certificates`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_signed_requests: bool,
    /// Where its metadata is read from: when it is added, and again every
    /// `saml_metadata_refresh_minutes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    /// The CA certificates (PEM) the metadata address's HTTPS certificate must chain to,
    /// instead of the system's: for an SP whose address has a certificate of a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_ca_pem: Option<String>,
}

const MAX_PEM: usize = 16 * 1024;

/// The DER of a PEM certificate (`-----BEGIN CERTIFICATE-----`).
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, String> {
    if pem.len() > MAX_PEM {
        return Err("certificate longer than 16 KiB".into());
    }
    use rustls_pki_types::pem::{self, PemObject};
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                "expected a PEM certificate (-----BEGIN CERTIFICATE-----)".to_string()
            }
            e => format!("not a readable PEM certificate: {e}"),
        })?;
    if der.first() != Some(&0x30) {
        return Err("the certificate is not DER inside".into());
    }
    Ok(der.to_vec())
}

/// A PEM certificate of DER bytes.
pub fn certificate_pem(der: &[u8]) -> String {
    let b64 = data_encoding::BASE64.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn check_url(what: &str, u: &str, errs: &mut Vec<String>) {
    // The parser drops tabs and line breaks (and trims controls) that the stored text keeps.
    if u.chars().any(char::is_control) || u.len() > 2048 {
        errs.push(format!(
            "{what}: '{}' has control characters or is longer than 2048 characters",
            u.escape_default()
        ));
        return;
    }
    match url::Url::parse(u) {
        Ok(p) if p.scheme() == "https" && p.username().is_empty() && p.password().is_none() => {}
        Ok(p)
            if p.scheme() == "http"
                && matches!(
                    p.host_str(),
                    Some("127.0.0.1" | "localhost" | "[::1]")
                ) => {}
        Ok(_) => errs.push(format!(
            "{what}: '{u}' must be https:// (http:// only to 127.0.0.1, localhost or [::1]), without user info"
        )),
        Err(e) => errs.push(format!("{what}: '{u}': {e}")),
    }
}

impl SamlServiceProvider {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(&self.name) {
            errs.push(format!("name: {e}"));
        }
        if self.entity_id.trim().is_empty()
            || self.entity_id.len() > 1024
            || self.entity_id.chars().any(char::is_control)
        {
            errs.push("entity_id: 1 to 1024 characters, no control characters".into());
        }
        if self.acs_urls.is_empty() {
            errs.push("acs_urls: at least one assertion consumer service URL".into());
        }
        for u in &self.acs_urls {
            check_url("acs_urls", u, &mut errs);
        }
        if !self.acs_indexes.is_empty() && self.acs_indexes.len() != self.acs_urls.len() {
            errs.push("acs_indexes: one index for each ACS URL".into());
        }
        if let Some(u) = &self.slo_url {
            check_url("slo_url", u, &mut errs);
        }
        for c in &self.certificates {
            if let Err(e) = certificate_der(c) {
                errs.push(format!("certificates: {e}"));
            }
        }
        if let Some(c) = &self.encryption_certificate
            && let Err(e) = certificate_der(c)
        {
            errs.push(format!("encryption_certificate: {e}"));
        }
        if self.encrypt_assertions && self.encryption_certificate.is_none() {
            errs.push("encrypt_assertions: needs encryption_certificate".into());
        }
        if self.require_signed_requests && self.certificates.is_empty() {
            errs.push("require_signed_requests: needs the SP's signing certificates".into());
        }
        if !self.sign_assertions && !self.sign_responses {
            errs.push("sign_assertions, sign_responses: at least one must be signed".into());
        }
        if let Some(from) = &self.name_id_from {
            if self.name_id_format == NameIdFormat::Transient {
                errs.push("name_id_from: a transient NameID is new at each sign-in".into());
            } else if !(NAME_ID_SOURCES.contains(&from.as_str())
                || from
                    .strip_prefix("attribute:")
                    .is_some_and(|n| !n.is_empty()))
            {
                errs.push(format!(
                    "name_id_from: '{from}' is not one of username, email or attribute:<name> \
                     (the SP identifies the account by it: names, phone numbers and groups are \
                     neither unique nor stable)"
                ));
            }
        }
        for a in &self.attributes {
            if a.name.trim().is_empty() || a.name.len() > 256 {
                errs.push("attributes: a name of 1 to 256 characters".into());
            }
            if a.friendly_name.as_ref().is_some_and(|f| {
                f.trim().is_empty() || f.len() > 256 || f.chars().any(char::is_control)
            }) {
                errs.push(format!(
                    "attributes: the friendly name of '{}' must be 1 to 256 characters",
                    a.name
                ));
            }
            if !is_attribute_source(&a.from) {
                errs.push(format!(
                    "attributes: '{}' comes from '{}', not one of {} or attribute:<name>",
                    a.name,
                    a.from,
                    ATTRIBUTE_SOURCES.join(", ")
                ));
            }
        }
        if let Some(u) = &self.metadata_url {
            check_url("metadata_url", u, &mut errs);
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp() -> SamlServiceProvider {
        serde_json::from_value(serde_json::json!({
            "name": "wiki", "entity_id": "https://wiki.example.org/sp",
            "application": "intranet", "acs_urls": ["https://wiki.example.org/acs"]
        }))
        .unwrap()
    }

    #[test]
    fn defaults_sign_and_check_urls_and_sources() {
        let s = sp();
        assert!(s.sign_assertions && s.sign_responses && !s.encrypt_assertions);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        let mut bad = sp();
        bad.acs_urls = vec!["http://wiki.example.org/acs".into()];
        bad.attributes = vec![SamlAttribute {
            name: "x".into(),
            from: "password".into(),
            friendly_name: None,
        }];
        bad.encrypt_assertions = true;
        bad.acs_indexes = vec![1, 2];
        bad.certificates = vec!["not a certificate".into()];
        bad.name_id_from = Some("groups".into());
        bad.slo_url = Some("https://wiki.example.org/s\nlo".into());
        let p = bad.problems().join("\n");
        for want in [
            "name_id_from: 'groups' is not one of username, email or attribute:<name>",
            "must be https://",
            "not one of",
            "needs encryption_certificate",
            "expected a PEM certificate",
            "one index for each ACS URL",
            "has control characters",
        ] {
            assert!(p.contains(want), "{p}");
        }
    }

    #[test]
    fn name_id_from_a_source_but_not_transient() {
        let mut s = sp();
        s.name_id_format = NameIdFormat::Persistent;
        s.name_id_from = Some("attribute:objectguid".into());
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        s.name_id_format = NameIdFormat::Transient;
        assert!(s.problems().join("").contains("new at each sign-in"));
        s.name_id_format = NameIdFormat::Unspecified;
        for bad in ["attribute:", "display_name", "phone", "surname"] {
            s.name_id_from = Some(bad.into());
            assert!(s.problems().join("").contains("not one of"), "{bad}");
        }
        s.name_id_from = Some("email".into());
        assert!(s.problems().is_empty());
    }

    #[test]
    fn name_id_formats_round_trip() {
        for f in [NameIdFormat::Email, NameIdFormat::Transient] {
            assert_eq!(NameIdFormat::of_urn(f.urn()), Some(f));
        }
        assert_eq!(NameIdFormat::of_urn("urn:x"), None);
    }
}
