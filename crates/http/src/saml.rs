//! The SAML 2.0 identity provider: metadata, SP-initiated single sign-on over the
//! HTTP-Redirect and HTTP-POST bindings, IdP-initiated sign-on, and signed (optionally
//! encrypted) assertions posted back to the service provider. Users pass the factor chain of
//! the SP's application on the login page of [`crate::web`]; an SSO session serves later
//! requests.
//!
//! XML parsing, canonicalisation and signatures are gamlastan's (pure Rust, checked against
//! `xmlsec1` in the tests); the private key signs through ring ([`crate::saml_keys`]).

use crate::HttpState;
use crate::saml_keys::{IdpKey, RSA_SHA256};
use crate::web::{self, Flow};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use data_encoding::BASE64;
use gamlastan::bindings::HttpRequest;
use gamlastan::core::assertion::attribute::{Attribute, AttributeValue};
use gamlastan::core::assertion::name_id::NameId;
use gamlastan::core::protocol::request::{AuthnRequest, AuthnRequestRef};
use gamlastan::core::protocol::status::Status;
use gamlastan::crypto::{SamlVerifier, VerifyResult};
use gamlastan::profiles::sso::idp as gidp;
use gamlastan::profiles::sso::web_browser::{ResponseOptions, ResponseTimes};
use gamlastan::xml::SamlSerialize;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tessera_core::model::{NameIdFormat, SamlParticipant, SamlServiceProvider};

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

/// The IdP's metadata: SSO and SLO over both bindings, the signing certificate and the next
/// one (when imported), the NameID formats.
async fn metadata(state: St) -> Response {
    let base = match crate::oauth::issuer(&state) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let (current, next) = match (
        crate::saml_keys::signing(&state).await,
        crate::saml_keys::next(&state).await,
    ) {
        (Ok(Some(c)), Ok(n)) => (c, n),
        (Ok(None), _) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "SAML is not set up: import the IdP's key with `tessera saml import-key`\n",
            )
                .into_response();
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "SAML key not readable");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let mut keys = String::new();
    for k in std::iter::once(&current).chain(next.as_ref()) {
        keys.push_str(&format!(
            "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
            k.cert_b64()
        ));
    }
    let id = xml_escape(&entity_id(&base));
    let sso = xml_escape(&format!("{base}/saml/sso"));
    let slo = xml_escape(&format!("{base}/saml/slo"));
    let mut formats = String::new();
    for f in [
        NameIdFormat::Unspecified,
        NameIdFormat::Email,
        NameIdFormat::Persistent,
        NameIdFormat::Transient,
    ] {
        formats.push_str(&format!("<md:NameIDFormat>{}</md:NameIDFormat>", f.urn()));
    }
    // The scope of scoped attributes (eduPersonPrincipalName): SPs accept only values of the
    // scopes the IdP's metadata lists.
    let scope = &state.engine.snapshot().settings.saml_scope;
    let extensions = if scope.is_empty() {
        String::new()
    } else {
        format!(
            "<md:Extensions><shibmd:Scope xmlns:shibmd=\"urn:mace:shibboleth:metadata:1.0\" regexp=\"false\">{}</shibmd:Scope></md:Extensions>",
            xml_escape(scope)
        )
    };
    keys.insert_str(0, &extensions);
    // Signed by the IdP's key, valid a week (SPs and federations that check metadata
    // signatures take it as it is; the others ignore the signature). Signing costs an RSA
    // operation: the signed document is kept five minutes for the same keys and address.
    let cache_key = format!("{base}\u{0}{keys}");
    let clock_now = state.engine.clock().now();
    if let Ok(cache) = SIGNED_METADATA.lock()
        && let Some((k, until, xml)) = cache.as_ref()
        && *k == cache_key
        && clock_now < *until
    {
        return metadata_response(xml.clone());
    }
    let now = now_utc(&state);
    let valid_until = (now + TimeDelta::days(7)).format("%Y-%m-%dT%H:%M:%SZ");
    let doc_id = format!("_{}", tessera_core::rng::random_hex(state.engine.rng(), 16));
    let template = gidp::signature_template(&doc_id, &current.cert_b64(), RSA_SHA256);
    let body = format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" ID=\"{doc_id}\" validUntil=\"{valid_until}\" entityID=\"{id}\">{template}<md:IDPSSODescriptor WantAuthnRequestsSigned=\"false\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{keys}<md:SingleLogoutService Binding=\"{BINDING_REDIRECT}\" Location=\"{slo}\"/>{formats}<md:SingleSignOnService Binding=\"{BINDING_REDIRECT}\" Location=\"{sso}\"/><md:SingleSignOnService Binding=\"{BINDING_POST}\" Location=\"{sso}\"/></md:IDPSSODescriptor></md:EntityDescriptor>"
    );
    let xml = match current.saml_signer().sign_enveloped(&body) {
        Ok(signed) => format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{signed}\n"),
        Err(e) => {
            tracing::error!(error = %e, "SAML metadata not signed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if let Ok(mut cache) = SIGNED_METADATA.lock() {
        *cache = Some((cache_key, clock_now + 300, xml.clone()));
    }
    metadata_response(xml)
}

/// The last signed metadata: for which base address and keys, until when, the document.
type SignedMetadata = std::sync::Mutex<Option<(String, i64, String)>>;
static SIGNED_METADATA: SignedMetadata = std::sync::Mutex::new(None);

fn metadata_response(xml: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/samlmetadata+xml"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        xml,
    )
        .into_response()
}

// ---- reading service provider metadata -----------------------------------------------------

/// What an SP's metadata says: entity ID, ACS URLs (HTTP-POST), SLO (HTTP-Redirect),
/// certificates, NameID format, whether its requests are signed.
pub fn sp_from_metadata(
    xml: &str,
    name: &str,
    application: &str,
) -> Result<SamlServiceProvider, String> {
    use gamlastan::metadata::EntityDescriptorRef;
    let doc = gamlastan::xml::parse_secure_metadata(xml)
        .map_err(|e| format!("the metadata is not well-formed XML: {e}"))?;
    let ed = gamlastan::xml::parse_saml::<EntityDescriptorRef<'_>>(&doc)
        .map_err(|e| format!("not SAML metadata (one md:EntityDescriptor): {e}"))?
        .to_owned();
    let Some(sp) = ed.sp_sso_descriptors().first() else {
        return Err("the metadata has no SPSSODescriptor".into());
    };
    let mut acs: Vec<_> = sp
        .assertion_consumer_services
        .iter()
        .filter(|a| a.endpoint.binding == BINDING_POST)
        .collect();
    // The default first, then by index.
    acs.sort_by_key(|a| (a.is_default != Some(true), a.index));
    if acs.is_empty() {
        return Err(
            "the metadata has no AssertionConsumerService with the HTTP-POST binding".into(),
        );
    }
    let slo = sp
        .sso_base
        .single_logout_services
        .iter()
        .find(|e| e.binding == BINDING_REDIRECT)
        .map(|e| e.location.clone());
    let pem = tessera_core::model::saml::certificate_pem;
    let name_id_format = sp
        .sso_base
        .name_id_formats
        .iter()
        .find_map(|f| NameIdFormat::of_urn(f))
        .unwrap_or_default();
    // Metadata that names no format does not restrict it: requests get what they ask for.
    let name_id_format_as_asked = sp.sso_base.name_id_formats.is_empty();
    let certificates: Vec<String> = sp
        .signing_certificates_der()
        .iter()
        .map(|d| pem(d))
        .collect();
    let sp = SamlServiceProvider {
        name: name.to_string(),
        description: String::new(),
        entity_id: ed.entity_id.clone(),
        application: tessera_core::ids::AppName(application.to_string()),
        acs_urls: acs.iter().map(|a| a.endpoint.location.clone()).collect(),
        acs_indexes: acs.iter().map(|a| a.index).collect(),
        slo_url: slo,
        require_signed_requests: sp.authn_requests_signed == Some(true),
        certificates,
        encryption_certificate: sp.encryption_certificates_der().first().map(|d| pem(d)),
        name_id_format,
        name_id_format_as_asked,
        name_id_from: None,
        attributes: Vec::new(),
        attribute_names: Default::default(),
        sign_assertions: true,
        sign_responses: true,
        encrypt_assertions: false,
        idp_initiated: false,
        metadata_url: None,
        metadata_ca_pem: None,
    };
    Ok(sp)
}

/// An SP registered from its metadata address, as its metadata now describes it: the
/// addresses, certificates and signed-request requirement from the metadata, the
/// administrator's choices (NameID format, attributes, signing, encryption) kept. `None` when
/// nothing changed; an error when the metadata is unusable or names another entity.
pub fn refreshed(
    stored: &SamlServiceProvider,
    xml: &str,
) -> Result<Option<SamlServiceProvider>, String> {
    let read = sp_from_metadata(xml, &stored.name, &stored.application.0)?;
    if read.entity_id != stored.entity_id {
        return Err(format!(
            "the metadata now names entity '{}', not '{}': not taken",
            read.entity_id, stored.entity_id
        ));
    }
    let mut next = stored.clone();
    next.acs_urls = read.acs_urls;
    next.acs_indexes = read.acs_indexes;
    next.slo_url = read.slo_url;
    next.certificates = read.certificates;
    if read.encryption_certificate.is_some() {
        next.encryption_certificate = read.encryption_certificate;
    }
    next.require_signed_requests = stored.require_signed_requests || read.require_signed_requests;
    Ok((next != *stored).then_some(next))
}

// ---- the bindings ---------------------------------------------------------------------------

/// A request as gamlastan's bindings read it: raw (still percent-encoded) values.
struct Raw {
    url: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    body: Bytes,
}

impl Raw {
    fn new(query: Option<&str>, body: Bytes) -> Raw {
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
struct Decoded {
    xml: String,
    relay_state: Option<String>,
    redirect_signature: Option<gamlastan::bindings::RedirectDecoded>,
    /// The Redirect binding's `SigAlg`.
    sig_alg: Option<String>,
}

fn verifier(cert_pem: &str) -> Option<SamlVerifier> {
    let der = tessera_core::model::saml::certificate_der(cert_pem).ok()?;
    let key = gamlastan::crypto::keys::loader::load_x509_cert_der(&der).ok()?;
    let mut km = gamlastan::crypto::KeysManager::new();
    km.add_key(key);
    Some(SamlVerifier::new(km))
}

/// Whether the request is signed by one of the SP's certificates: the redirect binding's query
/// signature, or an enveloped XML signature over the whole request (POST).
fn signed_by(sp: &SamlServiceProvider, decoded: &Decoded, request_id: &str) -> bool {
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
fn name_id_refusal(sp: &SamlServiceProvider, asked: Option<&str>) -> Option<&'static str> {
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
fn query_sig_alg(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "SigAlg")
        .map(|(_, v)| v.into_owned())
}

/// Whether a request was signed with SHA-1 (the Redirect binding's `SigAlg`, or the signature
/// and digest methods of an enveloped signature): such signatures are refused as such, not as
/// signatures that do not verify.
fn signed_with_sha1(sig_alg: Option<String>, xml: &str) -> bool {
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
fn read_redirect(query: Option<&str>) -> Option<(gamlastan::bindings::RedirectDecoded, String)> {
    let decoded = gamlastan::bindings::redirect_decode(&Raw::new(query, Bytes::new())).ok()?;
    let xml = String::from_utf8(decoded.saml_xml.clone()).ok()?;
    Some((decoded, xml))
}

/// A request of the HTTP-POST binding (a form body): decoded, with its XML, and whether our own
/// page posted it again (same-site).
fn read_post(body: Bytes) -> Option<(gamlastan::bindings::post::PostDecoded, String, bool)> {
    let req = Raw::new(None, body);
    let decoded = gamlastan::bindings::post::post_decode(&req)
        .ok()
        .filter(|d| d.is_request)?;
    let xml = String::from_utf8(decoded.saml_xml.clone()).ok()?;
    let again = req.form.iter().any(|(k, v)| k == SAME_SITE && v == "1");
    Some((decoded, xml, again))
}

/// An authentication request's XML, read.
fn read_authn_request(xml: &str) -> Option<AuthnRequest> {
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

async fn sso_redirect(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = web::lang_of(&headers, None);
    let Some((decoded, xml)) = read_redirect(raw.as_deref()).filter(|(d, _)| d.is_request) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let relay_state = decoded.relay_state.clone();
    let signed = decoded.signature.is_some();
    sso(
        &state,
        &headers,
        Decoded {
            xml,
            relay_state,
            redirect_signature: signed.then_some(decoded),
            sig_alg: query_sig_alg(raw.as_deref()),
        },
    )
    .await
}

async fn sso_post(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let lang = web::lang_of(&headers, None);
    let Some((decoded, xml, again)) = read_post(body) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    if again {
        return sso(
            &state,
            &headers,
            Decoded {
                xml,
                relay_state: decoded.relay_state,
                redirect_signature: None,
                sig_alg: None,
            },
        )
        .await;
    }
    // A POST from the SP's site carries no SameSite=Lax cookie, so the SSO session would not
    // serve it: a page of ours posts it again (same-site now, with the cookie) — nothing is
    // kept meanwhile. Only an authentication request of a registered SP is posted again.
    let issuer = read_authn_request(&xml).and_then(|r| r.base.issuer.map(|i| i.value));
    let Some(issuer) = issuer else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let Some(app) = state
        .engine
        .snapshot()
        .saml_sp_by_entity(&issuer)
        .map(|sp| sp.application.0.clone())
    else {
        return web::fatal(&lang, web::PageError::UnknownSp, StatusCode::BAD_REQUEST);
    };
    let title = web::brand(&state, &app, &lang).title;
    post_page(
        &lang,
        &title,
        Post::RequestAgain,
        &xml,
        decoded.relay_state.as_deref(),
    )
}

/// The form field that marks a request posted again by our own page.
const SAME_SITE: &str = "same_site";

/// Whether a request ID of an SP is new (then it is remembered until `until`); one of two
/// copies sent at once wins. A store that cannot say refuses.
async fn first_use(state: &HttpState, sp: &SamlServiceProvider, id: &str, until: i64) -> bool {
    let seen = format!("{}\u{0}{id}", sp.entity_id);
    match state
        .engine
        .sso()
        .first_use(tessera_core::sso::Once::SamlRequest, &seen, until)
        .await
    {
        Ok(first) => first,
        Err(e) => {
            tracing::error!(error = %e, "SAML request id not remembered: refused");
            false
        }
    }
}

/// An SP-initiated sign-on: the request checked (known SP, signature, ACS, binding, age,
/// destination), then the SSO session or the login page.
async fn sso(state: &HttpState, headers: &HeaderMap, decoded: Decoded) -> Response {
    let lang = web::lang_of(headers, None);
    let base = match crate::oauth::issuer(state) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(request) = read_authn_request(&decoded.xml) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let snap = state.engine.snapshot();
    // Until the SP is known there is no trusted address to answer to: a page.
    let Some(sp) = request
        .base
        .issuer
        .as_ref()
        .and_then(|i| snap.saml_sp_by_entity(&i.value))
        .cloned()
    else {
        return web::fatal(&lang, web::PageError::UnknownSp, StatusCode::BAD_REQUEST);
    };
    if let Some(too_long) = relay_too_long(&lang, &sp.name, decoded.relay_state.as_deref()) {
        return too_long;
    }
    let relay_state = decoded.relay_state.clone();
    let default_acs = sp.acs_urls.first().cloned().unwrap_or_default();
    let request_id = request.base.id.clone();
    // Signed: a query signature, or a signature element of the request itself (checked only
    // then: verifying costs a certificate parse and an RSA operation per certificate).
    let has_signature = decoded.redirect_signature.is_some() || request.base.has_signature;
    let signed = has_signature && signed_by(&sp, &decoded, &request_id);
    let acs = match (
        &request.assertion_consumer_service_url,
        request.assertion_consumer_service_index,
    ) {
        (Some(url), _) => sp.acs_urls.iter().find(|u| *u == url).cloned(),
        (None, Some(i)) if sp.acs_indexes.is_empty() => sp.acs_urls.get(usize::from(i)).cloned(),
        (None, Some(i)) => sp
            .acs_indexes
            .iter()
            .position(|x| *x == i)
            .and_then(|p| sp.acs_urls.get(p))
            .cloned(),
        (None, None) => Some(default_acs.clone()),
    };
    let now = state.engine.clock().now();
    let issued = request.base.issue_instant.timestamp();
    let destination_ok = request
        .base
        .destination
        .as_deref()
        .is_none_or(|d| d == format!("{base}/saml/sso"));
    // Errors from here on go to the SP's registered default ACS as SAML statuses (Requester,
    // with this sub-status).
    let asked_format: Option<String> = request
        .name_id_policy
        .as_ref()
        .and_then(|p| p.format.clone());
    let asked_context = request
        .requested_authn_context
        .as_ref()
        .map(|r| AskedContext {
            classes: r.authn_context_class_refs.clone(),
            comparison: match r.comparison {
                gamlastan::core::protocol::request::AuthnContextComparison::Exact => "exact",
                gamlastan::core::protocol::request::AuthnContextComparison::Minimum => "minimum",
                gamlastan::core::protocol::request::AuthnContextComparison::Better => "better",
                gamlastan::core::protocol::request::AuthnContextComparison::Maximum => "maximum",
            }
            .to_string(),
        });
    let mfa_class = snap.settings.saml_mfa_context_class.clone();
    // A context no sign-in here can give (a class Tessera never asserts, declarations only):
    // refused before any login page.
    let context_possible = match &request.requested_authn_context {
        None => true,
        // Declarations only: none is ever asserted.
        Some(r) if r.authn_context_class_refs.is_empty() => r.authn_context_decl_refs.is_empty(),
        Some(_) => asked_context.as_ref().is_some_and(|a| {
            (1..=2).any(|achieved| context_class(Some(a), achieved, &mfa_class).is_some())
        }),
    };
    let failure = if has_signature && signed_with_sha1(decoded.sig_alg.clone(), &decoded.xml) {
        Some((
            "RequestDenied",
            "SHA-1 is not allowed: sign requests with RSA-SHA256 (or stronger) and SHA-256 digests",
        ))
    } else if has_signature && !signed {
        Some((
            "RequestDenied",
            "the request's signature does not verify with the SP's certificates",
        ))
    } else if sp.require_signed_requests && !signed {
        Some(("RequestDenied", "the request must be signed"))
    } else if acs.is_none() {
        Some((
            "RequestDenied",
            "the assertion consumer service is not registered for this SP",
        ))
    } else if request
        .protocol_binding
        .as_deref()
        .is_some_and(|b| b != BINDING_POST)
    {
        Some((
            "UnsupportedBinding",
            "answers are sent with the HTTP-POST binding only",
        ))
    } else if (now - issued).abs() > REQUEST_AGE_SECONDS {
        Some((
            "RequestDenied",
            "the request is too old (or from the future): check the SP's clock",
        ))
    } else if !destination_ok {
        Some(("RequestDenied", "the request's Destination is not this IdP"))
    } else if let Some(why) = name_id_refusal(&sp, asked_format.as_deref()) {
        Some(("InvalidNameIDPolicy", why))
    } else if !context_possible {
        Some((
            "NoAuthnContext",
            "none of the requested authentication context classes can be met: Tessera asserts \
             PasswordProtectedTransport, https://refeds.org/profile/sfa, \
             https://refeds.org/profile/mfa and the saml_mfa_context_class setting",
        ))
    // Each request is answered once (checked last: it remembers the request).
    } else if !first_use(state, &sp, &request_id, now + 2 * REQUEST_AGE_SECONDS).await {
        Some(("RequestDenied", "this request was answered already"))
    } else {
        None
    };
    if let Some((sub, message)) = failure {
        let status = Status::with_sub_status(
            &format!("{STATUS}Requester"),
            &format!("{STATUS}{sub}"),
            Some(message.to_string()),
        );
        return error_response(
            state,
            &lang,
            &sp,
            &default_acs,
            Some(&request_id),
            relay_state,
            status,
        )
        .await;
    }
    let pending = Pending {
        sp: sp.name.clone(),
        acs_url: acs.unwrap_or(default_acs),
        request_id: Some(request_id),
        relay_state,
        name_id_format: asked_format
            .as_deref()
            .and_then(NameIdFormat::of_urn)
            .filter(|f| sp.name_id_format_as_asked && *f != NameIdFormat::Unspecified),
        authn_context: asked_context,
    };
    start(
        state,
        headers,
        &sp,
        pending,
        request.force_authn == Some(true),
        request.is_passive == Some(true),
    )
    .await
}

/// IdP-initiated sign-on: `/saml/init?sp=<name or entity ID>[&RelayState=…]`.
async fn idp_initiated(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = web::lang_of(&headers, None);
    let Ok(q) = web::query(raw.as_deref()) else {
        return web::fatal(&lang, web::PageError::UnknownSp, StatusCode::BAD_REQUEST);
    };
    let snap = state.engine.snapshot();
    let sp = q.get("sp").and_then(|s| {
        snap.saml_sps
            .get(&s.to_lowercase())
            .or_else(|| snap.saml_sp_by_entity(s))
            .cloned()
    });
    let Some(sp) = sp else {
        return web::fatal(&lang, web::PageError::UnknownSp, StatusCode::BAD_REQUEST);
    };
    if !sp.idp_initiated {
        return web::fatal(&lang, web::PageError::NoIdpInitiated, StatusCode::FORBIDDEN);
    }
    if let Some(too_long) = relay_too_long(&lang, &sp.name, q.get("RelayState").map(String::as_str))
    {
        return too_long;
    }
    let pending = Pending {
        sp: sp.name.clone(),
        acs_url: sp.acs_urls.first().cloned().unwrap_or_default(),
        request_id: None,
        relay_state: q.get("RelayState").cloned(),
        name_id_format: None,
        authn_context: None,
    };
    start(&state, &headers, &sp, pending, false, false).await
}

/// The SSO session answers at once when it passed the SP's application (and no fresh sign-in
/// is asked for); otherwise the login page.
async fn start(
    state: &HttpState,
    headers: &HeaderMap,
    sp: &SamlServiceProvider,
    pending: Pending,
    force_authn: bool,
    passive: bool,
) -> Response {
    let lang = web::lang_of(headers, None);
    let snap = state.engine.snapshot();
    let now = state.engine.clock().now();
    let app = sp.application.clone();
    if !force_authn
        && let Some(key) = web::cookie(state, headers, web::SSO_COOKIE)
        && let Some(session) = web::live_session(state, &key).await
        && session.apps.contains(&app.0)
        && web::serves_app(&snap, &app, &session, now)
        // A session whose sign-in does not meet the context asked for signs in again.
        && context_class(
            pending.authn_context.as_ref(),
            if session.mfa_apps.contains(&app.0) { 2 } else { 1 },
            &snap.settings.saml_mfa_context_class,
        )
        .is_some()
    {
        web::touch_session(state, &key).await;
        let mfa = session.mfa_apps.contains(&app.0);
        let (res, joined) = answer(
            state,
            &lang,
            &pending,
            &app.0,
            &session.user,
            &session.realm,
            session.auth_time,
            mfa,
        )
        .await;
        if let Some(p) = joined {
            web::remember_saml(state, &key, p).await;
        }
        return res;
    }
    if passive {
        let status = Status::with_sub_status(
            &format!("{STATUS}Responder"),
            &format!("{STATUS}NoPassive"),
            Some("no session for this application".into()),
        );
        return error_response(
            state,
            &lang,
            sp,
            &pending.acs_url,
            pending.request_id.as_deref(),
            pending.relay_state.clone(),
            status,
        )
        .await;
    }
    let key = state.engine.sso().new_key();
    let flow = Flow {
        saml: Some(pending),
        ..Flow::without_oidc(state, &app.0, &lang)
    };
    web::begin(state, &key, &flow).await
}

// ---- the answer -----------------------------------------------------------------------------

fn attribute(
    name: &str,
    format: &str,
    friendly: Option<&str>,
    values: Vec<String>,
) -> Option<Attribute> {
    (!values.is_empty()).then(|| Attribute {
        name: name.to_string(),
        name_format: Some(format.to_string()),
        friendly_name: friendly.map(str::to_string),
        values: values.into_iter().map(AttributeValue::String).collect(),
    })
}

/// The user's values of an attribute source (`username`, `groups`, `attribute:<name>`, ...).
fn user_values(user: &tessera_core::model::User, scope: &str, from: &str) -> Vec<String> {
    let one = |v: Option<&String>| v.cloned().into_iter().collect::<Vec<_>>();
    match from {
        "username" => vec![user.username.clone()],
        // Scoped: `login@scope`; a login that is already an address of the scope as it is. No
        // scope, or a login of another domain: none (an SP would refuse it anyway).
        "principal_name" if !scope.is_empty() => match user.username.rsplit_once('@') {
            None => vec![format!("{}@{scope}", user.username)],
            Some((_, domain)) if domain.eq_ignore_ascii_case(scope) => vec![user.username.clone()],
            Some(_) => Vec::new(),
        },
        "principal_name" => Vec::new(),
        "email" => one(user.email.as_ref()),
        "given_name" => one(user.given_name.as_ref()),
        "surname" => one(user.surname.as_ref()),
        "display_name" => {
            let display = [user.given_name.as_deref(), user.surname.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!display.is_empty())
                .then_some(display)
                .into_iter()
                .collect()
        }
        "phone" => one(user.phone.as_ref()),
        "groups" => user.groups.clone(),
        other => other
            .strip_prefix("attribute:")
            .and_then(|a| user.attributes.get(&a.to_lowercase()))
            .cloned()
            .unwrap_or_default(),
    }
}

/// The attributes sent to `sp`: the administrator's list, or the standard ones named as
/// the SP's `attribute_names` says (OID names with the `uri` format and the short name as
/// FriendlyName, or the short names with `basic`).
fn attributes(
    sp: &SamlServiceProvider,
    user: &tessera_core::model::User,
    scope: &str,
) -> Vec<Attribute> {
    use tessera_core::model::{ATTRNAME_BASIC, ATTRNAME_URI, AttributeNames, STANDARD_ATTRIBUTES};
    let source = |from: &str| user_values(user, scope, from);
    if !sp.attributes.is_empty() {
        return sp
            .attributes
            .iter()
            .filter_map(|a| {
                // A standard OID name gets its short name beside it unless one is given.
                let friendly = a.friendly_name.as_deref().or_else(|| {
                    STANDARD_ATTRIBUTES
                        .iter()
                        .find(|(oid, _, _)| *oid == a.name)
                        .map(|(_, short, _)| *short)
                });
                attribute(&a.name, a.name_format(), friendly, source(&a.from))
            })
            .collect();
    }
    STANDARD_ATTRIBUTES
        .iter()
        .filter_map(|(oid, short, from)| match sp.attribute_names {
            AttributeNames::Uri => attribute(oid, ATTRNAME_URI, Some(short), source(from)),
            AttributeNames::Basic => {
                let name = if *from == "groups" { "groups" } else { short };
                attribute(name, ATTRNAME_BASIC, None, source(from))
            }
        })
        .collect()
}

/// A stable pseudonym of the user for one SP: HMAC-SHA256 under a salt kept sealed.
async fn persistent_id(
    state: &HttpState,
    sp: &SamlServiceProvider,
    user: &tessera_core::model::User,
) -> Result<String, String> {
    let keys = state.engine.keys();
    let slot = tessera_core::keys::KeySlot::SamlPersistentSalt;
    let salt = keys
        .stored_or_made(slot, || {
            Ok(zeroize::Zeroizing::new(
                state.engine.sso().new_key().into_bytes(),
            ))
        })
        .await
        .map_err(|e| e.to_string())?;
    let key = keys.open(slot, &salt).map_err(|e| e.to_string())?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let tag = ring::hmac::sign(
        &key,
        format!("{}\u{0}{}/{}", sp.entity_id, user.source, user.id).as_bytes(),
    );
    Ok(data_encoding::BASE64URL_NOPAD.encode(tag.as_ref()))
}

/// The signed Response for a user who passed the SP's application, posted to its ACS by the
/// browser; `mfa`: the sign-in proved two kinds of factor.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer(
    state: &HttpState,
    lang: &str,
    pending: &Pending,
    passed_app: &str,
    user: &str,
    realm: &str,
    auth_time: i64,
    mfa: bool,
) -> (Response, Option<SamlParticipant>) {
    let snap = state.engine.snapshot();
    // The SP as it is now: it must still be bound to the application whose factors were passed.
    let Some(sp) = snap
        .saml_sps
        .get(&pending.sp.to_lowercase())
        .filter(|sp| sp.application.0.eq_ignore_ascii_case(passed_app))
        .cloned()
    else {
        return (
            web::fatal(lang, web::PageError::Expired, StatusCode::BAD_REQUEST),
            None,
        );
    };
    let base = match crate::oauth::issuer(state) {
        Ok(b) => b,
        Err(e) => return (e.into_response(), None),
    };
    let key = match crate::saml_keys::signing(state).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            return (
                web::fatal(
                    lang,
                    web::PageError::SamlNotSetUp,
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                None,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "SAML key not readable");
            return (
                web::fatal(
                    lang,
                    web::PageError::SamlNotSetUp,
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                None,
            );
        }
    };
    let now = state.engine.clock().now();
    let realm_name = tessera_core::ids::RealmName(realm.to_string());
    let user = match state.engine.find_user(&snap, &realm_name, user).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => {
            return (
                web::fatal(lang, web::PageError::Failed, StatusCode::FORBIDDEN),
                None,
            );
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE.into_response(), None),
    };
    let Some(context) = context_class(
        pending.authn_context.as_ref(),
        if mfa { 2 } else { 1 },
        &snap.settings.saml_mfa_context_class,
    ) else {
        tracing::info!(sp = %sp.name, user = %user.username, "SAML sign-in did not meet the requested authentication context");
        let why = "the sign-in did not meet the requested authentication context: the user \
                   passed a single kind of factor";
        return (
            responder_refusal(state, lang, &sp, pending, "NoAuthnContext", why.into()).await,
            None,
        );
    };
    let format = pending.name_id_format.unwrap_or(sp.name_id_format);
    let value = match (&sp.name_id_from, format) {
        // The administrator's choice of source (Microsoft 365's ImmutableID, an employee id).
        // One value, or none: of several, which is the account? (LDAP keeps no order.)
        (Some(from), f) if f != NameIdFormat::Transient => {
            match user_values(&user, &snap.settings.saml_scope, from).as_slice() {
                [one] if !one.is_empty() => Some(one.clone()),
                _ => None,
            }
        }
        (_, NameIdFormat::Unspecified) => Some(user.username.clone()),
        (_, NameIdFormat::Email) => user.email.clone(),
        (_, NameIdFormat::Transient) => Some(format!("_{}", state.engine.sso().new_key())),
        (_, NameIdFormat::Persistent) => match persistent_id(state, &sp, &user).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "SAML persistent id not made");
                return (StatusCode::SERVICE_UNAVAILABLE.into_response(), None);
            }
        },
    };
    let Some(value) = value else {
        let why = match &sp.name_id_from {
            Some(from) => format!("the user has no single {from} for the NameID"),
            None => "the user has no mail address for the NameID".into(),
        };
        return (
            responder_refusal(state, lang, &sp, pending, "InvalidNameIDPolicy", why).await,
            None,
        );
    };
    let name_id = NameId {
        value,
        format: Some(format.urn().to_string()),
        name_qualifier: None,
        sp_name_qualifier: None,
        sp_provided_id: None,
    };
    let issue = now_utc(state);
    // SPs end their own sessions when the SSO session ends: its absolute end, from the
    // sign-in (the setting, or the application's shorter limit).
    let mut lifetime = i64::from(snap.settings.sso_session_minutes) * 60;
    if let Some(m) = snap
        .application(&sp.application)
        .and_then(|a| a.sso_session_minutes)
    {
        lifetime = lifetime.min(i64::from(m) * 60);
    }
    let session_end = DateTime::from_timestamp(auth_time + lifetime, 0);
    let session_index = format!("_{}", state.engine.sso().new_key());
    let joined = SamlParticipant {
        sp: sp.name.clone(),
        name_id: name_id.value.clone(),
        name_id_format: format.urn().to_string(),
        session_index: session_index.clone(),
    };
    let options = ResponseOptions {
        idp_entity_id: entity_id(&base),
        in_response_to: pending.request_id.clone(),
        sp_entity_id: sp.entity_id.clone(),
        acs_url: pending.acs_url.clone(),
        assertion_lifetime_seconds: ASSERTION_SECONDS as u64,
        session_index: Some(session_index),
        session_not_on_or_after: session_end,
        authn_context_class_ref: Some(context),
        client_address: None,
        attributes: attributes(&sp, &user, &snap.settings.saml_scope),
    };
    let times = ResponseTimes {
        issue_instant: issue,
        authn_instant: DateTime::from_timestamp(auth_time, 0).unwrap_or(issue),
    };
    let mut response = gidp::create_response(&options, &name_id, times);
    for a in &mut response.assertions {
        if let Some(c) = a.conditions.as_mut() {
            c.not_before = Some(issue - TimeDelta::seconds(SKEW_SECONDS));
        }
    }
    let built = signed_xml(&sp, &key, response);
    match built {
        Ok(xml) => {
            tracing::info!(sp = %sp.name, user = %user.username, "SAML assertion issued");
            web::audit_sso(
                state,
                "saml_sign_in",
                &format!("saml:{}", sp.name),
                &user.username,
                realm,
                Some(sp.application.0.as_str()),
                &format!("SAML assertion issued to {} ({})", sp.name, sp.entity_id),
            )
            .await;
            let page = post_page(
                lang,
                &web::brand(state, &sp.application.0, lang).title,
                Post::Response(&pending.acs_url),
                &xml,
                pending.relay_state.as_deref(),
            );
            (page, Some(joined))
        }
        Err(e) => {
            tracing::error!(error = %e, sp = %sp.name, "SAML response not built");
            (StatusCode::INTERNAL_SERVER_ERROR.into_response(), None)
        }
    }
}

/// A `Responder` error with sub-status `sub` posted to the pending request's ACS: the user
/// signed in, but the answer the SP asked for cannot be given.
async fn responder_refusal(
    state: &HttpState,
    lang: &str,
    sp: &SamlServiceProvider,
    pending: &Pending,
    sub: &str,
    why: String,
) -> Response {
    let status = Status::with_sub_status(
        &format!("{STATUS}Responder"),
        &format!("{STATUS}{sub}"),
        Some(why),
    );
    error_response(
        state,
        lang,
        sp,
        &pending.acs_url,
        pending.request_id.as_deref(),
        pending.relay_state.clone(),
        status,
    )
    .await
}

/// The response signed as the SP wants (assertion, response or both; an encrypted assertion
/// is signed before it is encrypted).
fn signed_xml(
    sp: &SamlServiceProvider,
    key: &Arc<IdpKey>,
    response: gamlastan::core::protocol::response::Response,
) -> Result<String, String> {
    let signer = key.saml_signer();
    let cert = key.cert_b64();
    if sp.encrypt_assertions {
        let pem = sp.encryption_certificate.as_deref().unwrap_or_default();
        let der = tessera_core::model::saml::certificate_der(pem)?;
        let mut response = response;
        for a in std::mem::take(&mut response.assertions) {
            let mut xml = a.to_xml_string().map_err(|e| format!("serialising: {e}"))?;
            if sp.sign_assertions {
                // Signed, then encrypted: the signature goes after the assertion's Issuer
                // (its first child, in our own output).
                let tpl = gidp::signature_template(&a.id, &cert, RSA_SHA256);
                let end = "</saml:Issuer>";
                let at = xml
                    .find(end)
                    .map(|i| i + end.len())
                    .ok_or("the assertion has no Issuer")?;
                xml.insert_str(at, &tpl);
                xml = signer
                    .sign_enveloped(&xml)
                    .map_err(|e| format!("signing the assertion: {e}"))?;
            }
            let encryptor = gamlastan::crypto::SamlEncryptor::for_certificate(&der)
                .map_err(|e| format!("the SP's encryption certificate: {e}"))?;
            let template = gamlastan::crypto::encryptor::encrypted_data_template_for_cert(
                &der,
                &gamlastan::crypto::encryptor::CertEncryptionOptions::default(),
            );
            let encrypted = encryptor
                .encrypt(&template, xml.as_bytes())
                .map_err(|e| format!("encrypting the assertion: {e}"))?;
            response
                .encrypted_assertions
                .push(gamlastan::core::assertion::types::EncryptedAssertion {
                    raw: format!(
                        "<saml:EncryptedAssertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\">{encrypted}</saml:EncryptedAssertion>"
                    )
                    .into_bytes(),
                });
        }
        let id = response.base.id.clone();
        let xml = response
            .to_xml_string()
            .map_err(|e| format!("serialising: {e}"))?;
        if !sp.sign_responses {
            return Ok(xml);
        }
        return gidp::sign_response_xml(&xml, &signer, &cert, &id, None, false, true)
            .map_err(|e| format!("signing: {e}"));
    }
    let id = response.base.id.clone();
    let assertion_id = response.assertions.first().map(|a| a.id.clone());
    let xml = response
        .to_xml_string()
        .map_err(|e| format!("serialising: {e}"))?;
    gidp::sign_response_xml(
        &xml,
        &signer,
        &cert,
        &id,
        assertion_id.as_deref(),
        sp.sign_assertions,
        sp.sign_responses,
    )
    .map_err(|e| format!("signing: {e}"))
}

/// A signed error Response to a registered ACS of the SP.
async fn error_response(
    state: &HttpState,
    lang: &str,
    sp: &SamlServiceProvider,
    acs: &str,
    in_response_to: Option<&str>,
    relay_state: Option<String>,
    status: Status,
) -> Response {
    let base = match crate::oauth::issuer(state) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let key = match crate::saml_keys::signing(state).await {
        Ok(Some(k)) => k,
        _ => {
            return web::fatal(
                lang,
                web::PageError::SamlNotSetUp,
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let message = status.status_message.clone().unwrap_or_default();
    tracing::info!(sp = %sp.name, reason = %message, "SAML request refused");
    let response = gidp::create_error_response(
        &entity_id(&base),
        in_response_to,
        acs,
        status,
        now_utc(state),
    );
    let id = response.base.id.clone();
    let signed = response
        .to_xml_string()
        .map_err(|e| e.to_string())
        .and_then(|xml| {
            gidp::sign_response_xml(
                &xml,
                &key.saml_signer(),
                &key.cert_b64(),
                &id,
                None,
                false,
                true,
            )
            .map_err(|e| e.to_string())
        });
    match signed {
        Ok(xml) => post_page(
            lang,
            &web::brand(state, &sp.application.0, lang).title,
            Post::Response(acs),
            &xml,
            relay_state.as_deref(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "SAML error response not built");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// What a post page posts, and where.
enum Post<'a> {
    /// The answer, to the SP's ACS.
    Response(&'a str),
    /// The SP's request, again to `/saml/sso` (from our own site: see `sso_post`).
    RequestAgain,
}

/// The page that posts a SAML message: a form, submitted by a script from our own origin
/// (the CSP allows no inline script), or by the user's click without scripts.
fn post_page(lang: &str, title: &str, what: Post<'_>, xml: &str, relay: Option<&str>) -> Response {
    let t = web::texts(lang);
    let (action, field, again, text) = match what {
        Post::Response(acs) => (acs, "SAMLResponse", false, &t["saml_continue"]),
        Post::RequestAgain => ("/saml/sso", "SAMLRequest", true, &t["saml_request_again"]),
    };
    let html = web::template("saml_post.html").and_then(|tpl| {
        tpl.render(minijinja::context! {
            lang => lang, t => t, app_title => title, action => action, field => field,
            value => BASE64.encode(xml.as_bytes()), relay => relay, again => again,
            same_site => SAME_SITE, text => text,
        })
    });
    let mut res = match html {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "SAML post page not rendered");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    web::page_headers(&mut res);
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    res
}

async fn post_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        "document.getElementById('saml-post').submit();\n",
    )
        .into_response()
}

// ---- single logout --------------------------------------------------------------------------

const LOGOUT_SECONDS: i64 = 600;

/// A front-channel logout under way: who asked, and the service providers still to be told.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Logout {
    /// The SP that asked (none when the logout began at Tessera).
    origin: Option<String>,
    origin_request: Option<String>,
    origin_relay: Option<String>,
    remaining: Vec<SamlParticipant>,
    lang: String,
    /// Where the browser goes at the end (a relying party's registered address), when no SP
    /// asked.
    #[serde(default)]
    then: Option<String>,
}

fn verified_redirect(
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

/// `/saml/slo` (HTTP-Redirect): a service provider's LogoutRequest ends the browser's SSO
/// session and starts telling the session's other SPs; their LogoutResponses come back here
/// until the last, then the asking SP gets its LogoutResponse.
async fn slo(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = web::lang_of(&headers, None);
    let Some((decoded, xml)) = read_redirect(raw.as_deref()) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let Ok(doc) = gamlastan::xml::parse_secure(&xml) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let snap = state.engine.snapshot();
    let now = state.engine.clock().now();
    if !decoded.is_request {
        // An SP we told answers; the relay state is our logout's key.
        use gamlastan::core::protocol::logout::LogoutResponseRef;
        let Ok(resp) = gamlastan::xml::parse_saml::<LogoutResponseRef<'_>>(&doc) else {
            return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
        };
        let from = resp
            .issuer
            .as_ref()
            .and_then(|i| snap.saml_sp_by_entity(i.value));
        let Some(key) = decoded.relay_state.as_deref() else {
            return web::fatal(&lang, web::PageError::Expired, StatusCode::BAD_REQUEST);
        };
        let Ok(Some(logout)) = state.engine.sso().saml_logout::<Logout>(key).await else {
            return web::fatal(&lang, web::PageError::Expired, StatusCode::BAD_REQUEST);
        };
        if let Some(sp) = from
            && !sp.certificates.is_empty()
            && !verified_redirect(sp, &decoded)
        {
            tracing::warn!(sp = %sp.name, "SAML logout response not signed by the SP; ignored");
        }
        return next_logout(&state, key, logout).await;
    }
    use gamlastan::core::protocol::logout::LogoutRequestRef;
    let Ok(request) = gamlastan::xml::parse_saml::<LogoutRequestRef<'_>>(&doc) else {
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::BAD_REQUEST);
    };
    let request = request.to_owned();
    let Some(sp) = request
        .issuer
        .as_ref()
        .and_then(|i| snap.saml_sp_by_entity(&i.value))
        .cloned()
    else {
        return web::fatal(&lang, web::PageError::UnknownSp, StatusCode::BAD_REQUEST);
    };
    if let Some(too_long) = relay_too_long(&lang, &sp.name, decoded.relay_state.as_deref()) {
        return too_long;
    }
    // A logout request from an SP whose certificates we know must be signed by it; recent,
    // meant for us, and used once.
    let signed = verified_redirect(&sp, &decoded);
    if (!sp.certificates.is_empty() || decoded.signature.is_some()) && !signed {
        tracing::warn!(sp = %sp.name, "SAML logout request refused: not signed by the SP");
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::FORBIDDEN);
    }
    let base = match crate::oauth::issuer(&state) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fresh = (now - request.issue_instant.timestamp()).abs() <= REQUEST_AGE_SECONDS
        && request.not_on_or_after.is_none_or(|t| t.timestamp() > now)
        && request
            .destination
            .as_deref()
            .is_none_or(|d| d == format!("{base}/saml/slo"));
    if !fresh || !first_use(&state, &sp, &request.id, now + 2 * REQUEST_AGE_SECONDS).await {
        tracing::warn!(sp = %sp.name, "SAML logout request refused: stale, replayed or not for us");
        return web::fatal(&lang, web::PageError::BadSaml, StatusCode::FORBIDDEN);
    }
    // Unsigned (an SP without certificates): anyone could have made it, so the user is asked,
    // as at /logout.
    if !signed {
        return web::ask_logout(&state, &headers).await;
    }
    let named = match &request.name_id {
        gamlastan::core::assertion::name_id::NameIdOrEncryptedId::NameId(n) => {
            Some(n.value.clone())
        }
        _ => None,
    };
    // The browser's session ends when it is the one the SP signed in with that NameID.
    let mut remaining = Vec::new();
    let mut ended_here = false;
    if let Some(key) = web::cookie(&state, &headers, web::SSO_COOKIE)
        && let Some(session) = web::live_session(&state, &key).await
        && session
            .saml
            .iter()
            .any(|p| p.sp == sp.name && Some(&p.name_id) == named.as_ref())
        && let Some(ended) =
            web::end_session(&state, &key, &format!("SAML logout from {}", sp.name)).await
    {
        tracing::info!(sp = %sp.name, user = %ended.user, "SSO session ended by SAML logout");
        crate::backchannel::notify(&state, std::slice::from_ref(&ended));
        ended_here = true;
        remaining = ended.saml.into_iter().filter(|p| p.sp != sp.name).collect();
    }
    let logout = Logout {
        origin: Some(sp.name.clone()),
        origin_request: Some(request.id.clone()),
        origin_relay: decoded.relay_state.clone(),
        remaining,
        lang,
        then: None,
    };
    let ended = !logout.remaining.is_empty() || ended_here;
    let key = state.engine.sso().new_key();
    let mut res = next_logout(&state, &key, logout).await;
    if ended {
        res.headers_mut().append(
            header::SET_COOKIE,
            web::set_cookie(&state, web::SSO_COOKIE, "", 0),
        );
    }
    res
}

/// The browser signed out at Tessera (`/logout`): the session's SAML service providers are
/// told one by one, then the signed-out page.
pub(crate) async fn logout_everywhere(
    state: &HttpState,
    lang: &str,
    told: Vec<SamlParticipant>,
    then: Option<String>,
) -> Response {
    let logout = Logout {
        origin: None,
        origin_request: None,
        origin_relay: None,
        remaining: told,
        lang: lang.to_string(),
        then,
    };
    let key = state.engine.sso().new_key();
    next_logout(state, &key, logout).await
}

/// Sends the browser to the next SP to be told (a signed LogoutRequest), or, when none is
/// left, back to the SP that asked (a signed LogoutResponse), or to the signed-out page.
async fn next_logout(state: &HttpState, key: &str, mut logout: Logout) -> Response {
    let snap = state.engine.snapshot();
    let now = state.engine.clock().now();
    let base = match crate::oauth::issuer(state) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let idp = entity_id(&base);
    let signing = match crate::saml_keys::signing(state).await {
        Ok(Some(k)) => k,
        _ => {
            return web::fatal(
                &logout.lang,
                web::PageError::SamlNotSetUp,
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    let signer = signing.saml_signer();
    while let Some(p) = logout.remaining.pop() {
        let Some(sp) = snap.saml_sps.get(&p.sp.to_lowercase()) else {
            continue;
        };
        let Some(slo_url) = &sp.slo_url else {
            continue;
        };
        let participant = gamlastan::profiles::session::SessionParticipant {
            entity_id: sp.entity_id.clone(),
            name_id_value: p.name_id.clone(),
            name_id_format: Some(p.name_id_format.clone()),
            name_qualifier: None,
            sp_name_qualifier: None,
            sp_provided_id: None,
            session_indexes: vec![p.session_index.clone()],
            slo_url: Some(slo_url.clone()),
            slo_binding: Some(BINDING_REDIRECT.into()),
            session_not_on_or_after: None,
        };
        let mut request =
            gamlastan::profiles::logout::create_idp_propagation_request(&idp, &participant);
        request.issue_instant = now_utc(state);
        request.not_on_or_after = Some(now_utc(state) + TimeDelta::seconds(LOGOUT_SECONDS));
        request.destination = Some(slo_url.clone());
        let Ok(xml) = request.to_xml_string() else {
            continue;
        };
        let relay = gamlastan::bindings::RelayState::echo(key);
        let url =
            gamlastan::bindings::redirect_encode(&gamlastan::bindings::RedirectEncodeParams {
                saml_xml: xml.as_bytes(),
                is_request: true,
                destination: slo_url,
                relay_state: Some(&relay),
                signer: Some((&signer, RSA_SHA256)),
            });
        let Ok(url) = url else {
            tracing::warn!(sp = %sp.name, "SAML logout request not built");
            continue;
        };
        let kept = state
            .engine
            .sso()
            .keep_saml_logout(key, &logout, now + LOGOUT_SECONDS)
            .await;
        if let Err(e) = kept {
            tracing::error!(error = %e, "SAML logout not kept");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        tracing::info!(sp = %sp.name, "SAML logout sent on");
        return web::redirect(&url);
    }
    state.engine.sso().end_saml_logout(key).await.ok();
    let origin = logout
        .origin
        .as_ref()
        .and_then(|o| snap.saml_sps.get(&o.to_lowercase()));
    if let (Some(sp), Some(in_response_to)) = (origin, &logout.origin_request)
        && let Some(slo_url) = &sp.slo_url
    {
        let response = gamlastan::profiles::logout::create_logout_response_success(
            &idp,
            in_response_to,
            Some(slo_url),
        );
        let relay = logout
            .origin_relay
            .as_deref()
            .map(gamlastan::bindings::RelayState::echo);
        let url = response.to_xml_string().ok().and_then(|xml| {
            gamlastan::bindings::redirect_encode(&gamlastan::bindings::RedirectEncodeParams {
                saml_xml: xml.as_bytes(),
                is_request: false,
                destination: slo_url,
                relay_state: relay.as_ref(),
                signer: Some((&signer, RSA_SHA256)),
            })
            .ok()
        });
        if let Some(url) = url {
            return web::redirect(&url);
        }
    }
    if let Some(then) = &logout.then {
        return web::redirect(then);
    }
    web::fatal(&logout.lang, web::PageError::SignedOut, StatusCode::OK)
}

/// A RelayState longer than Tessera keeps (1024 bytes) is refused with a page and a log line
/// naming the service provider, rather than dropped (the SP would lose where the user was
/// going without a word).
fn relay_too_long(lang: &str, sp: &str, relay: Option<&str>) -> Option<Response> {
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
