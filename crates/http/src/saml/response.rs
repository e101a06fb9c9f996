//! The answer to a service provider: the NameID and attributes of the user, the signed (and
//! optionally encrypted) assertion, and the page that posts it; error responses.

use super::*;
use crate::HttpState;
use crate::saml_keys::{IdpKey, RSA_SHA256};
use crate::web::{self};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta};
use data_encoding::BASE64;
use gamlastan::core::assertion::attribute::{Attribute, AttributeValue};
use gamlastan::core::assertion::name_id::NameId;
use gamlastan::core::protocol::status::Status;
use gamlastan::profiles::sso::idp as gidp;
use gamlastan::profiles::sso::web_browser::{ResponseOptions, ResponseTimes};
use gamlastan::xml::SamlSerialize;
use std::sync::Arc;
use tessera_core::model::{NameIdFormat, SamlParticipant, SamlServiceProvider};

pub(super) fn attribute(
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
pub(super) fn user_values(
    user: &tessera_core::model::User,
    scope: &str,
    from: &str,
) -> Vec<String> {
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
pub(super) fn attributes(
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
pub(super) async fn persistent_id(
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
pub(super) async fn responder_refusal(
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
pub(super) fn signed_xml(
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
pub(super) async fn error_response(
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
pub(super) enum Post<'a> {
    /// The answer, to the SP's ACS.
    Response(&'a str),
    /// The SP's request, again to `/saml/sso` (from our own site: see `sso_post`).
    RequestAgain,
}

/// The page that posts a SAML message: a form, submitted by a script from our own origin
/// (the CSP allows no inline script), or by the user's click without scripts.
pub(super) fn post_page(
    lang: &str,
    title: &str,
    what: Post<'_>,
    xml: &str,
    relay: Option<&str>,
) -> Response {
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

pub(super) async fn post_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        "document.getElementById('saml-post').submit();\n",
    )
        .into_response()
}
