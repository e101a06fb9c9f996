//! Single sign-on: SP-initiated over both bindings (replays refused), IdP-initiated, and the
//! start of a sign-in on the login page or from the SSO session.

use super::*;
use crate::HttpState;
use crate::web::{self, Flow};
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gamlastan::core::protocol::status::Status;
use tessera_core::model::{NameIdFormat, SamlServiceProvider};

pub(super) async fn sso_redirect(
    state: St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
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

pub(super) async fn sso_post(state: St, headers: HeaderMap, body: Bytes) -> Response {
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
pub(super) const SAME_SITE: &str = "same_site";

/// Whether a request ID of an SP is new (then it is remembered until `until`); one of two
/// copies sent at once wins. A store that cannot say refuses.
pub(super) async fn first_use(
    state: &HttpState,
    sp: &SamlServiceProvider,
    id: &str,
    until: i64,
) -> bool {
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
pub(super) async fn sso(state: &HttpState, headers: &HeaderMap, decoded: Decoded) -> Response {
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
pub(super) async fn idp_initiated(
    state: St,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
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
pub(super) async fn start(
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
