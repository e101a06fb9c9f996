//! The IdP's metadata (signed, cached while the key and address stay) and reading service
//! providers' metadata (uploaded, or fetched again on a schedule).

use super::*;
use crate::saml_keys::RSA_SHA256;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use gamlastan::profiles::sso::idp as gidp;
use tessera_core::model::{NameIdFormat, SamlServiceProvider};

/// The IdP's metadata: SSO and SLO over both bindings, the signing certificate and the next
/// one (when imported), the NameID formats.
pub(super) async fn metadata(state: St) -> Response {
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
pub(super) type SignedMetadata = std::sync::Mutex<Option<(String, i64, String)>>;

pub(super) static SIGNED_METADATA: SignedMetadata = std::sync::Mutex::new(None);

pub(super) fn metadata_response(xml: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/samlmetadata+xml"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        xml,
    )
        .into_response()
}

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
