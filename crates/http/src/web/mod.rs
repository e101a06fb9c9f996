//! The hosted login page and the OpenID Connect provider: a relying party sends the browser to
//! `/oidc/authorize`; the user passes the client's application factor by factor on `/login`
//! (server-rendered, no script); an SSO session cookie serves later sign-ins; the relying party
//! trades the code (PKCE S256) at `/oauth/token` for an access token and an ES256 ID token.
//!
//! Cookies are read and written here by hand: two opaque random values, HttpOnly and
//! SameSite=Lax, need no cookie library.

use crate::oauth::no_store;
use crate::{HttpState, St};
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use tessera_core::model::ApiClient;

mod login;
mod oidc;
mod pages;
mod session;
pub(crate) use login::*;
pub(crate) use oidc::*;
pub(crate) use pages::*;
pub(crate) use session::*;

/// The scopes an OIDC client may ask for.
const OIDC_SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];
pub(crate) const FLOW_COOKIE: &str = "tessera_flow";
pub(crate) const SSO_COOKIE: &str = "tessera_sso";
/// Seconds an authorization code can be traded.
const CODE_SECONDS: i64 = 60;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_post))
        .route("/login/style.css", get(style))
        .route("/login/brand/{app}/logo", get(brand_logo))
        .route("/login/brand/{app}/style.css", get(brand_style))
        .route("/logout", get(logout_page).post(logout))
        .route("/login/sessions", get(sessions_page).post(end_sessions))
        .route("/oidc/authorize", get(authorize).post(authorize_post))
        .route("/oidc/userinfo", get(userinfo).post(userinfo))
        .route("/.well-known/openid-configuration", get(discovery))
}

/// A sign-in on the login page, from `/oidc/authorize` to the code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Flow {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: String,
    pub(crate) scope: String,
    pub(crate) app: String,
    pub(crate) lang: String,
    pub(crate) csrf: String,
    /// The engine's transaction once the first factor is passed, the user it is for and what
    /// to ask.
    pub(crate) tx: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) prompt: Option<String>,
    /// The user could not be sent a code (unknown, say): the page asks for one all the same.
    #[serde(default)]
    pub(crate) dummy: bool,
    /// `max_age` of the request: an SSO session older than this does not serve it.
    #[serde(default)]
    pub(crate) max_age: Option<i64>,
    /// A SAML sign-on waiting for this login (the OIDC fields are then empty).
    #[serde(default)]
    pub(crate) saml: Option<crate::saml::Pending>,
    /// A sign-in to the user's own account pages (`/login` opened directly; the OIDC fields
    /// are then empty): it ends on the list of the user's sessions.
    #[serde(default)]
    pub(crate) account: bool,
}

impl Flow {
    /// A sign-in through `app` that no OIDC client asked for (a SAML sign-on or the account
    /// pages fill in what it is for).
    pub(crate) fn without_oidc(state: &HttpState, app: &str, lang: &str) -> Flow {
        Flow {
            client_id: String::new(),
            redirect_uri: String::new(),
            state: None,
            nonce: None,
            code_challenge: String::new(),
            scope: String::new(),
            app: app.to_string(),
            lang: lang.to_string(),
            csrf: state.engine.sso().new_key(),
            tx: None,
            user: None,
            prompt: None,
            dummy: false,
            max_age: None,
            saml: None,
            account: false,
        }
    }
}

type Session = tessera_core::model::SsoSession;

pub(crate) fn hash(key: &str) -> String {
    ApiClient::hash_secret(key)
}

/// The cookie's name: with the `__Host-` prefix when served over HTTPS, so that no sibling
/// domain can set it.
fn cookie_name(state: &HttpState, name: &str) -> String {
    let secure = state
        .engine
        .snapshot()
        .settings
        .public_url
        .starts_with("https://");
    if secure {
        format!("__Host-{name}")
    } else {
        name.to_string()
    }
}

pub(crate) fn cookie(state: &HttpState, headers: &HeaderMap, name: &str) -> Option<String> {
    let name = cookie_name(state, name);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name.as_str())
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

pub(crate) fn set_cookie(state: &HttpState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = state
        .engine
        .snapshot()
        .settings
        .public_url
        .starts_with("https://");
    let text = format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        cookie_name(state, name),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// Requests to the web sign-in pages are limited per client address and minute
/// (`web_requests_per_minute`, per node); stylesheets, scripts and logos are not counted.
pub(crate) async fn rate_limit(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    // Assets, and what servers (not browsers) call: a relying party's backend asks userinfo
    // for all its users from one address.
    let exempt = path == "/login/style.css"
        || path == "/login/saml-post.js"
        || path.starts_with("/login/brand/")
        || path == "/saml/metadata"
        || path == "/.well-known/openid-configuration"
        || path == "/oidc/userinfo";
    let snap = state.engine.snapshot();
    let limit = snap.settings.web_requests_per_minute;
    let ip = state.client_ip(peer, req.headers(), None);
    if exempt || limit == 0 || snap.rate_limit_exempt.iter().any(|n| n.contains(&ip)) {
        return next.run(req).await;
    }
    // IPv6 by its /64: one host is given a whole network.
    let ip = tessera_core::netmatch::client_group(ip);
    let minute = state.engine.clock().now() / 60;
    if !state.web_rates.over(ip, minute, limit) {
        return next.run(req).await;
    }
    tracing::warn!(%ip, "web sign-in rate limit");
    let lang = lang_of(req.headers(), None);
    let mut res = fatal(&lang, PageError::TooMany, StatusCode::TOO_MANY_REQUESTS);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    res
}

pub(crate) fn lang_of(headers: &HeaderMap, asked: Option<&str>) -> String {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pick = asked.unwrap_or(accept).trim().to_ascii_lowercase();
    if pick.starts_with("tr") { "tr" } else { "en" }.to_string()
}

pub(crate) fn query(raw: Option<&str>) -> Result<HashMap<String, String>, ()> {
    pairs_once(raw.unwrap_or("").as_bytes())
}

/// The pairs of a query string or form body; a name given twice is an error (RFC 6749 §3.1,
/// §3.2: parameters must not repeat).
pub(crate) fn pairs_once(input: &[u8]) -> Result<HashMap<String, String>, ()> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(input) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(());
        }
    }
    Ok(out)
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    no_store(&mut res);
    res
}

/// `redirect_uri` with the parameters added.
fn back_to(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", ser.finish())
}

/// The OIDC subject of a user: the user source and the user's id in it — unique across realms
/// and never given to another user (a login name may be, after a deletion).
pub(crate) fn subject(user: &tessera_core::model::User) -> String {
    format!("{}/{}", user.source, user.id)
}

/// A form's token is the one expected (compared in constant time).
fn same_token(given: Option<&String>, want: &str) -> bool {
    given.is_some_and(|c| {
        c.len() == want.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), want.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_error_has_its_text_in_every_language() {
        for lang in ["en", "tr"] {
            let words = texts(lang);
            for e in PageError::ALL {
                let text = words[e.key()].as_str().unwrap_or_default();
                assert!(!text.is_empty(), "{lang}: no text for {e:?}");
            }
        }
        // The two languages say different things (no untranslated copy).
        for e in PageError::ALL {
            assert_ne!(texts("en")[e.key()], texts("tr")[e.key()], "{e:?}");
        }
    }
}
