//! Single logout over HTTP-Redirect: the SSO session ends and every other service provider it
//! signed in to is told in turn, then the one that asked.

use super::*;
use crate::HttpState;
use crate::saml_keys::RSA_SHA256;
use crate::web::{self};
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use gamlastan::xml::SamlSerialize;
use serde::{Deserialize, Serialize};
use tessera_core::model::SamlParticipant;

pub(super) const LOGOUT_SECONDS: i64 = 600;

/// A front-channel logout under way: who asked, and the service providers still to be told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Logout {
    /// The SP that asked (none when the logout began at Tessera).
    pub(super) origin: Option<String>,
    pub(super) origin_request: Option<String>,
    pub(super) origin_relay: Option<String>,
    pub(super) remaining: Vec<SamlParticipant>,
    pub(super) lang: String,
    /// Where the browser goes at the end (a relying party's registered address), when no SP
    /// asked.
    #[serde(default)]
    pub(super) then: Option<String>,
}

/// `/saml/slo` (HTTP-Redirect): a service provider's LogoutRequest ends the browser's SSO
/// session and starts telling the session's other SPs; their LogoutResponses come back here
/// until the last, then the asking SP gets its LogoutResponse.
pub(super) async fn slo(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
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
pub(super) async fn next_logout(state: &HttpState, key: &str, mut logout: Logout) -> Response {
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
