//! The SAML 2.0 identity provider: metadata, SP-initiated single sign-on over the
//! HTTP-Redirect and HTTP-POST bindings, IdP-initiated sign-on, and signed (optionally
//! encrypted) assertions posted back to the service provider. Users pass the factor chain of
//! the SP's application on the login page of [`crate::web`]; an SSO session serves later
//! requests.
//!
//! XML parsing, canonicalisation and signatures are gamlastan's (pure Rust, checked against
//! `xmlsec1` in the tests); the private key signs through ring ([`crate::saml_keys`]).

use crate::HttpState;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tessera_core::model::NameIdFormat;

mod metadata;
mod request;
mod response;
mod slo;
mod sso;
use metadata::*;
pub use metadata::{refreshed, sp_from_metadata};
pub use request::read_untrusted;
use request::*;
pub(crate) use response::answer;
use response::*;
pub(crate) use slo::logout_everywhere;
use slo::*;
use sso::*;

type St = State<HttpState>;

const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
const STATUS: &str = "urn:oasis:names:tc:SAML:2.0:status:";
const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const ASSERTION_SECONDS: i64 = 300;
/// How far back `NotBefore` reaches, for service providers whose clock is a little behind.
const SKEW_SECONDS: i64 = 60;
/// Authentication requests older than this (or this far in the future) are refused.
const REQUEST_AGE_SECONDS: i64 = 300;
const MAX_RELAY_STATE: usize = 1024;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/saml/metadata", get(metadata))
        .route("/saml/sso", get(sso_redirect).post(sso_post))
        .route("/saml/init", get(idp_initiated))
        .route("/saml/slo", get(slo))
        .route("/login/saml-post.js", get(post_script))
}

/// A sign-on request waiting for the login page: where the answer goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The service provider's name.
    pub(crate) sp: String,
    pub(crate) acs_url: String,
    /// The request's ID (none when the sign-on began at the IdP).
    pub(crate) request_id: Option<String>,
    pub(crate) relay_state: Option<String>,
    /// The NameID format the request asked for and the SP may be given (none: the SP's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name_id_format: Option<NameIdFormat>,
    /// The authentication context the request asked for (`RequestedAuthnContext`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authn_context: Option<AskedContext>,
}

/// A request's `RequestedAuthnContext`: the classes in the SP's order of preference and how
/// the asserted one compares with them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AskedContext {
    pub(crate) classes: Vec<String>,
    /// `exact`, `minimum`, `better` or `maximum`.
    pub(crate) comparison: String,
}

const REFEDS_MFA: &str = "https://refeds.org/profile/mfa";
const REFEDS_SFA: &str = "https://refeds.org/profile/sfa";
const PASSWORD: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password";
const UNSPECIFIED_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";

/// How strong a sign-in a class stands for: 2 two kinds of factor (the REFEDS MFA profile,
/// or the `saml_mfa_context_class`), 1 a single factor (password-protected transport, the
/// REFEDS single-factor profile), 0 unspecified; `None`: a class Tessera never asserts.
fn context_strength(class: &str, mfa_class: &str) -> Option<u8> {
    match class {
        c if c == REFEDS_MFA || c == mfa_class => Some(2),
        PASSWORD_PROTECTED | PASSWORD | REFEDS_SFA => Some(1),
        UNSPECIFIED_CONTEXT => Some(0),
        _ => None,
    }
}

/// The class asserted for a sign-in of strength `achieved` (2: two kinds of factor proven, 1:
/// otherwise) under what the request asked; `None` when the request cannot be met by it
/// (answered with `NoAuthnContext`). Unasked: what happened.
fn context_class(asked: Option<&AskedContext>, achieved: u8, mfa_class: &str) -> Option<String> {
    let happened = if achieved >= 2 {
        mfa_class
    } else {
        PASSWORD_PROTECTED
    };
    let Some(asked) = asked.filter(|a| !a.classes.is_empty()) else {
        return Some(happened.to_string());
    };
    asked.classes.iter().find_map(|class| {
        let strength = context_strength(class, mfa_class)?;
        let met = match asked.comparison.as_str() {
            "minimum" => strength <= achieved,
            "better" => strength < achieved,
            "maximum" => strength >= achieved,
            _ => strength == 0 || strength == achieved,
        };
        // Exact asks for that class; the others take the one that names what happened.
        met.then(|| match (asked.comparison.as_str(), strength) {
            (_, 0) => happened.to_string(),
            ("exact", _) => class.clone(),
            (_, s) if s == achieved => class.clone(),
            _ => happened.to_string(),
        })
    })
}

/// The IdP's entity ID: the metadata's address.
fn entity_id(base: &str) -> String {
    format!("{base}/saml/metadata")
}

fn now_utc(state: &HttpState) -> DateTime<Utc> {
    DateTime::from_timestamp(state.engine.clock().now(), 0).unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    gamlastan::crypto::bergshamra_c14n::escape::escape_attr(s)
}

// ---- metadata ------------------------------------------------------------------------------

// ---- reading service provider metadata -----------------------------------------------------

// ---- the bindings ---------------------------------------------------------------------------

// ---- the answer -----------------------------------------------------------------------------

// ---- single logout --------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(comparison: &str, classes: &[&str]) -> AskedContext {
        AskedContext {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            comparison: comparison.into(),
        }
    }

    #[test]
    fn authn_context_classes_as_asked() {
        let msft = "http://schemas.microsoft.com/claims/multipleauthn";
        // Unasked: what happened.
        assert_eq!(
            context_class(None, 2, REFEDS_MFA).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(
            context_class(None, 1, REFEDS_MFA).as_deref(),
            Some(PASSWORD_PROTECTED)
        );
        assert_eq!(context_class(None, 2, msft).as_deref(), Some(msft));
        // Exact MFA: met by two kinds of factor only; the class asked is asserted.
        let mfa = asked("exact", &[REFEDS_MFA]);
        assert_eq!(
            context_class(Some(&mfa), 2, msft).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(context_class(Some(&mfa), 1, msft), None);
        let ms = asked("exact", &[msft]);
        assert_eq!(context_class(Some(&ms), 2, msft).as_deref(), Some(msft));
        assert_eq!(context_class(Some(&ms), 2, REFEDS_MFA), None);
        // Exact password-protected transport: not met by an MFA sign-in (another class).
        let ppt = asked("exact", &[PASSWORD_PROTECTED]);
        assert_eq!(context_class(Some(&ppt), 2, REFEDS_MFA), None);
        assert_eq!(
            context_class(Some(&ppt), 1, REFEDS_MFA).as_deref(),
            Some(PASSWORD_PROTECTED)
        );
        // Minimum password: both, naming what happened.
        let min = asked("minimum", &[PASSWORD]);
        assert_eq!(
            context_class(Some(&min), 2, REFEDS_MFA).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(
            context_class(Some(&min), 1, REFEDS_MFA).as_deref(),
            Some(PASSWORD)
        );
        // Better than single factor: MFA only.
        let better = asked("better", &[REFEDS_SFA]);
        assert_eq!(context_class(Some(&better), 1, REFEDS_MFA), None);
        assert_eq!(
            context_class(Some(&better), 2, REFEDS_MFA).as_deref(),
            Some(REFEDS_MFA)
        );
        // Maximum single factor: not an MFA sign-in.
        let max = asked("maximum", &[REFEDS_SFA]);
        assert_eq!(context_class(Some(&max), 2, REFEDS_MFA), None);
        assert_eq!(
            context_class(Some(&max), 1, REFEDS_MFA).as_deref(),
            Some(REFEDS_SFA)
        );
        // Unknown classes are never met; the SP's order is kept among known ones.
        let unknown = asked("exact", &["urn:example:smartcard"]);
        assert_eq!(context_class(Some(&unknown), 2, REFEDS_MFA), None);
        let both = asked(
            "exact",
            &["urn:example:smartcard", REFEDS_MFA, PASSWORD_PROTECTED],
        );
        assert_eq!(
            context_class(Some(&both), 2, REFEDS_MFA).as_deref(),
            Some(REFEDS_MFA)
        );
        assert_eq!(
            context_class(Some(&both), 1, REFEDS_MFA).as_deref(),
            Some(PASSWORD_PROTECTED)
        );
        // Unspecified: anything, named as it happened.
        let any = asked("exact", &[UNSPECIFIED_CONTEXT]);
        assert_eq!(
            context_class(Some(&any), 1, REFEDS_MFA).as_deref(),
            Some(PASSWORD_PROTECTED)
        );
    }
}
