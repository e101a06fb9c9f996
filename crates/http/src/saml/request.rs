//! Reading what a service provider sends: the HTTP-Redirect and HTTP-POST bindings, their
//! signatures (query or XML), and the checks of an AuthnRequest before anything is kept.

use super::*;
use crate::web::{self};
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use gamlastan::bindings::HttpRequest;
use gamlastan::core::protocol::request::{AuthnRequest, AuthnRequestRef};
use gamlastan::crypto::{SamlVerifier, VerifyResult};
use tessera_core::model::{NameIdFormat, SamlServiceProvider};

/// A request as gamlastan's bindings read it: raw (still percent-encoded) values.
pub(super) struct Raw {
    pub(super) url: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) form: Vec<(String, String)>,
    pub(super) body: Bytes,
}

impl Raw {
    pub(super) fn new(query: Option<&str>, body: Bytes) -> Raw {
        let pairs = |s: &str| -> Vec<(String, String)> {
            s.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (p.to_string(), String::new()),
                })
                .collect()
        };
        let form = std::str::from_utf8(&body).map(pairs).unwrap_or_default();
        Raw {
            url: match query {
                Some(q) => format!("/saml/sso?{q}"),
                None => "/saml/sso".into(),
            },
            query: query.map(pairs).unwrap_or_default(),
            form,
            body,
        }
    }
}

impl HttpRequest for Raw {
    fn method(&self) -> &str {
        if self.body.is_empty() { "GET" } else { "POST" }
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn form_param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn header(&self, _name: &str) -> Option<&str> {
        None
    }
    fn body(&self) -> &[u8] {
        &self.body
    }
    fn remote_addr(&self) -> Option<&str> {
        None
    }
}

/// A decoded request: the XML, the relay state, and whether its signature checked out
/// against one of the SP's certificates (`None`: unsigned).
pub(super) struct Decoded {
    pub(super) xml: String,
    pub(super) relay_state: Option<String>,
    pub(super) redirect_signature: Option<gamlastan::bindings::RedirectDecoded>,
    /// The Redirect binding's `SigAlg`.
    pub(super) sig_alg: Option<String>,
}

pub(super) fn verifier(cert_pem: &str) -> Option<SamlVerifier> {
    let der = tessera_core::model::saml::certificate_der(cert_pem).ok()?;
    let key = gamlastan::crypto::keys::loader::load_x509_cert_der(&der).ok()?;
    let mut km = gamlastan::crypto::KeysManager::new();
    km.add_key(key);
    Some(SamlVerifier::new(km))
}

/// Whether the request is signed by one of the SP's certificates: the redirect binding's query
/// signature, or an enveloped XML signature over the whole request (POST).
pub(super) fn signed_by(sp: &SamlServiceProvider, decoded: &Decoded, request_id: &str) -> bool {
    let verifiers = sp.certificates.iter().filter_map(|c| verifier(c));
    if let Some(r) = &decoded.redirect_signature {
        return verifiers.into_iter().any(|v| {
            matches!(
                gamlastan::bindings::redirect::redirect_verify_signature(r, &v),
                Ok(true)
            )
        });
    }
    verifiers.into_iter().any(|v| {
        matches!(v.verify_enveloped(&decoded.xml), Ok(VerifyResult::Valid { references, .. })
            if references.iter().any(|r| r.uri.is_empty()
                || r.uri.strip_prefix('#') == Some(request_id)))
    })
}

/// Why a request's NameID format cannot be served, if it cannot: the SP's own format and
/// `unspecified` always can; another one when the SP takes what it asks for
/// (`name_id_format_as_asked`) and its NameID is not taken from a chosen source.
pub(super) fn name_id_refusal(
    sp: &SamlServiceProvider,
    asked: Option<&str>,
) -> Option<&'static str> {
    let asked = asked?;
    if asked == NameIdFormat::Unspecified.urn() || asked == sp.name_id_format.urn() {
        return None;
    }
    match NameIdFormat::of_urn(asked) {
        Some(_) if sp.name_id_format_as_asked && sp.name_id_from.is_none() => None,
        Some(_) => Some(
            "this SP is registered for another NameID format: register it with the format it asks for (tessera saml sp set NAME --name-id-format …), or let its metadata list the formats it takes",
        ),
        None => Some(
            "this NameID format is not offered (unspecified, emailAddress, persistent and transient are)",
        ),
    }
}

/// The `SigAlg` of an HTTP-Redirect query string.
pub(super) fn query_sig_alg(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "SigAlg")
        .map(|(_, v)| v.into_owned())
}

/// Whether a request was signed with SHA-1 (the Redirect binding's `SigAlg`, or the signature
/// and digest methods of an enveloped signature): such signatures are refused as such, not as
/// signatures that do not verify.
pub(super) fn signed_with_sha1(sig_alg: Option<String>, xml: &str) -> bool {
    const SHA1: [&str; 4] = [
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#dsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ];
    sig_alg.is_some_and(|a| SHA1.contains(&a.as_str()))
        || SHA1
            .iter()
            .any(|a| xml.contains(&format!("Algorithm=\"{a}\"")))
}

/// A message of the HTTP-Redirect binding (a query string): decoded, with its XML.
pub(super) fn read_redirect(
    query: Option<&str>,
) -> Option<(gamlastan::bindings::RedirectDecoded, String)> {
    let decoded = gamlastan::bindings::redirect_decode(&Raw::new(query, Bytes::new())).ok()?;
    let xml = String::from_utf8(decoded.saml_xml.clone()).ok()?;
    Some((decoded, xml))
}

/// A request of the HTTP-POST binding (a form body): decoded, with its XML, and whether our own
/// page posted it again (same-site).
pub(super) fn read_post(
    body: Bytes,
) -> Option<(gamlastan::bindings::post::PostDecoded, String, bool)> {
    let req = Raw::new(None, body);
    let decoded = gamlastan::bindings::post::post_decode(&req)
        .ok()
        .filter(|d| d.is_request)?;
    let xml = String::from_utf8(decoded.saml_xml.clone()).ok()?;
    let again = req.form.iter().any(|(k, v)| k == SAME_SITE && v == "1");
    Some((decoded, xml, again))
}

/// An authentication request's XML, read.
pub(super) fn read_authn_request(xml: &str) -> Option<AuthnRequest> {
    let doc = gamlastan::xml::parse_secure(xml).ok()?;
    let request = gamlastan::xml::parse_saml::<AuthnRequestRef<'_>>(&doc).ok()?;
    Some(request.to_owned())
}

/// Reads an untrusted SAML request as the SSO and SLO endpoints do (both bindings, both request
/// kinds, a logout response), for the fuzz targets: nothing may panic.
#[doc(hidden)]
pub fn read_untrusted(query: Option<&str>, body: &[u8]) {
    use gamlastan::core::protocol::logout::{LogoutRequestRef, LogoutResponseRef};
    let mut xmls = Vec::new();
    if let Some((_, xml)) = read_redirect(query) {
        xmls.push(xml);
    }
    if let Some((_, xml, _)) = read_post(Bytes::copy_from_slice(body)) {
        xmls.push(xml);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        xmls.push(text.to_string());
    }
    for xml in xmls {
        let _ = read_authn_request(&xml);
        if let Ok(doc) = gamlastan::xml::parse_secure(&xml) {
            let _ = gamlastan::xml::parse_saml::<LogoutRequestRef<'_>>(&doc).map(|r| r.to_owned());
            let _ = gamlastan::xml::parse_saml::<LogoutResponseRef<'_>>(&doc);
        }
    }
}

/// A RelayState longer than Tessera keeps (1024 bytes) is refused with a page and a log line
/// naming the service provider, rather than dropped (the SP would lose where the user was
/// going without a word).
pub(super) fn relay_too_long(lang: &str, sp: &str, relay: Option<&str>) -> Option<Response> {
    let len = relay?.len();
    if len <= MAX_RELAY_STATE {
        return None;
    }
    tracing::info!(
        sp,
        bytes = len,
        limit = MAX_RELAY_STATE,
        "SAML request refused: RelayState too long"
    );
    Some(web::fatal(
        lang,
        web::PageError::BadSaml,
        StatusCode::BAD_REQUEST,
    ))
}

pub(super) fn verified_redirect(
    sp: &SamlServiceProvider,
    decoded: &gamlastan::bindings::RedirectDecoded,
) -> bool {
    decoded.signature.is_some()
        && sp.certificates.iter().filter_map(|c| verifier(c)).any(|v| {
            matches!(
                gamlastan::bindings::redirect::redirect_verify_signature(decoded, &v),
                Ok(true)
            )
        })
}
