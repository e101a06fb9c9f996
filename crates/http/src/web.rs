//! The hosted login page and the OpenID Connect provider: a relying party sends the browser to
//! `/oidc/authorize`; the user passes the client's application factor by factor on `/login`
//! (server-rendered, no script); an SSO session cookie serves later sign-ins; the relying party
//! trades the code (PKCE S256) at `/oauth/token` for an access token and an ES256 ID token.
//!
//! Cookies are read and written here by hand: two opaque random values, HttpOnly and
//! SameSite=Lax, need no cookie library.

use crate::oauth::{
    OAuthError, active_claims, invalid_token, issuer, keep_refresh_token, no_store, token_signer,
    unavailable,
};
use crate::{HttpState, St};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use tessera_core::engine::{AuthRequest, Door, Outcome, RejectReason, RequestCtx};
use tessera_core::model::{ApiClient, ApiClientKind};
use tessera_core::sso::{AuthCode, SessionLimits, SignIn, SignedIn, SpentCode, pkce_matches};

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

/// Strict headers for every page.
pub(crate) fn page_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The page texts, in English and Turkish.
pub(crate) fn texts(lang: &str) -> Value {
    match lang {
        "tr" => words(&[
            ("title", "Oturum aç"),
            ("username", "Kullanıcı adı"),
            ("password", "Parola"),
            ("pin_code", "PIN ve kod"),
            ("password_code", "Parola ve kod"),
            ("password_or_code", "Parola ya da PIN ve kod"),
            (
                "pin_code_hint",
                "Varsa PIN'iniz, ardından boşluk bırakmadan doğrulama uygulamanızın gösterdiği kod.",
            ),
            (
                "code_pin_hint",
                "Doğrulama uygulamanızın gösterdiği kod, ardından boşluk bırakmadan varsa PIN'iniz.",
            ),
            (
                "password_code_hint",
                "Parolanız, ardından boşluk bırakmadan doğrulama uygulamanızın gösterdiği kod.",
            ),
            ("failed_code", "Kullanıcı adı, PIN ya da kod yanlış."),
            ("account", "Hesabınız"),
            (
                "account_intro",
                "Nerelerde oturumunuzun açık olduğunu görmek ve istediğiniz oturumu kapatmak için oturum açın.",
            ),
            ("home", "Oturum açma hizmeti"),
            (
                "home_what",
                "Bu sunucu, kurumunuzun uygulamalarında, VPN'inde ve ağında ikinci bir doğrulama adımıyla oturum açmanızı sağlar.",
            ),
            (
                "home_how",
                "Bir uygulamayı kullanmak için onu açın: oturum açmanız gerektiğinde sizi buraya getirir.",
            ),
            (
                "home_account",
                "Hesabınıza girin: oturumlarınızı görün ve kapatın",
            ),
            ("answer", "Kod"),
            ("continue", "Devam"),
            (
                "signed_in",
                "Oturum açtınız. Bu pencereyi kapatabilirsiniz.",
            ),
            (
                "start_again",
                "Oturum açmaya, girmek istediğiniz uygulamadan yeniden başlayın.",
            ),
            ("signed_out", "Oturumunuz kapatıldı."),
            ("sign_out", "Oturumu kapat"),
            (
                "sign_out_question",
                "Tüm uygulamalardaki oturumunuz kapatılsın mı?",
            ),
            ("sessions", "Oturumlarınız"),
            ("this_session", "bu tarayıcı"),
            ("end", "Kapat"),
            ("end_all", "Tümünü kapat"),
            ("address", "Adres"),
            ("browser", "Tarayıcı"),
            ("apps", "Uygulamalar"),
            ("failed", "Kullanıcı adı veya parola yanlış."),
            ("wrong", "Kod yanlış. Yeniden deneyin."),
            (
                "locked",
                "Çok fazla hatalı deneme yapıldı. Daha sonra yeniden deneyin.",
            ),
            ("expired", "Oturum açma süresi doldu. Yeniden başlayın."),
            (
                "bad_client",
                "Bu uygulama Tessera'da kayıtlı değil ya da geri dönüş adresi yanlış.",
            ),
            ("bad_saml", "Uygulamanın oturum açma isteği okunamadı."),
            (
                "unknown_sp",
                "Bu uygulama Tessera'da SAML hizmet sağlayıcısı olarak kayıtlı değil.",
            ),
            ("saml_not_set_up", "SAML oturum açma henüz kurulmadı."),
            ("saml_continue", "Uygulamaya dönülüyor…"),
            ("saml_request_again", "Oturum açma sürüyor…"),
            (
                "no_idp_initiated",
                "Bu uygulamada oturum açmaya uygulamanın kendisinden başlayın.",
            ),
            (
                "too_many",
                "Bu adresten çok fazla istek geldi. Bir dakika sonra yeniden deneyin.",
            ),
            (
                "busy",
                "Şu anda çok fazla oturum açma isteği işleniyor. Birkaç saniye sonra yeniden deneyin.",
            ),
        ]),
        _ => words(&[
            ("title", "Sign in"),
            ("username", "User name"),
            ("password", "Password"),
            ("pin_code", "PIN and code"),
            ("password_code", "Password and code"),
            ("password_or_code", "Password, or PIN and code"),
            (
                "pin_code_hint",
                "Your PIN, if you have one, then the code your authenticator app shows, with no space between.",
            ),
            (
                "code_pin_hint",
                "The code your authenticator app shows, then your PIN if you have one, with no space between.",
            ),
            (
                "password_code_hint",
                "Your password, then the code your authenticator app shows, with no space between.",
            ),
            ("failed_code", "Wrong user name, PIN or code."),
            ("account", "Your account"),
            (
                "account_intro",
                "Sign in to see where you are signed in, and to sign out where you choose.",
            ),
            ("home", "Sign-in service"),
            (
                "home_what",
                "This server signs you in to your organisation's applications, VPN and network with a second factor.",
            ),
            (
                "home_how",
                "To use an application, open it: it brings you here when you need to sign in.",
            ),
            (
                "home_account",
                "Go to your account: see your sessions and end them",
            ),
            ("answer", "Code"),
            ("continue", "Continue"),
            ("signed_in", "You are signed in. You can close this window."),
            (
                "start_again",
                "Start signing in again from the application you want to use.",
            ),
            ("signed_out", "You are signed out."),
            ("sign_out", "Sign out"),
            ("sign_out_question", "Sign out of every application?"),
            ("sessions", "Your sessions"),
            ("this_session", "this browser"),
            ("end", "End"),
            ("end_all", "End all"),
            ("address", "Address"),
            ("browser", "Browser"),
            ("apps", "Applications"),
            ("failed", "Wrong user name or password."),
            ("wrong", "Wrong code. Try again."),
            ("locked", "Too many failed attempts. Try again later."),
            ("expired", "Signing in took too long. Start again."),
            (
                "bad_client",
                "This application is not registered with Tessera, or its return address is wrong.",
            ),
            (
                "bad_saml",
                "The application's sign-in request could not be read.",
            ),
            (
                "unknown_sp",
                "This application is not registered with Tessera as a SAML service provider.",
            ),
            ("saml_not_set_up", "SAML sign-in is not set up yet."),
            ("saml_continue", "Returning to the application…"),
            ("saml_request_again", "Continuing the sign-in…"),
            (
                "no_idp_initiated",
                "Start signing in to this application from the application itself.",
            ),
            (
                "too_many",
                "Too many requests from this address. Try again in a minute.",
            ),
            (
                "busy",
                "Too many sign-ins are being checked right now. Try again in a few seconds.",
            ),
        ]),
    }
}

/// Page words from (key, text) pairs.
fn words(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect(),
    )
}

pub(crate) fn lang_of(headers: &HeaderMap, asked: Option<&str>) -> String {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pick = asked.unwrap_or(accept).trim().to_ascii_lowercase();
    if pick.starts_with("tr") { "tr" } else { "en" }.to_string()
}

struct Page<'a> {
    /// More hidden fields of the form (name, value).
    hidden: Vec<(&'static str, String)>,
    lang: &'a str,
    app_title: &'a str,
    brand: Option<&'a Brand>,
    step: &'a str,
    csrf: &'a str,
    error: Option<&'a str>,
    username: &'a str,
    /// The key of the page texts naming what the first page asks for beside the user name
    /// (see [`first_answer`]); none: only the user name.
    ask_password: Option<&'static str>,
    /// The token PIN goes before the code (the `prepend_pin` setting).
    pin_first: bool,
    prompt: &'a str,
    answer_type: &'a str,
    done: bool,
    fatal: bool,
}

/// A page template, parsed once for the process.
pub(crate) fn template(
    name: &str,
) -> Result<minijinja::Template<'static, 'static>, minijinja::Error> {
    static PAGES: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    PAGES
        .get_or_init(|| {
            let mut env = minijinja::Environment::new();
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            for (name, source) in [
                ("login.html", include_str!("../templates/login.html")),
                ("sessions.html", include_str!("../templates/sessions.html")),
                ("home.html", include_str!("../templates/home.html")),
                (
                    "saml_post.html",
                    include_str!("../templates/saml_post.html"),
                ),
            ] {
                if let Err(e) = env.add_template(name, source) {
                    tracing::error!(error = %e, template = name, "page template not parsed");
                }
            }
            env
        })
        .get_template(name)
}

fn render(page: Page<'_>, status: StatusCode) -> Response {
    let mut t = texts(page.lang);
    let none = Brand::default();
    let brand = page.brand.unwrap_or(&none);
    if let Some(map) = t.as_object_mut() {
        for (k, v) in &brand.words {
            map.insert(k.clone(), v.clone());
        }
    }
    let error = page
        .error
        .map(|key| t[key].as_str().unwrap_or(key).to_string());
    // What the first page asks for: the branding's own word, else the words for the factor,
    // with how to type a PIN or password and a code into one field.
    let (label, hint) = match page.ask_password {
        None => (String::new(), String::new()),
        Some(key) => {
            let hint_key = match key {
                "pin_code" if !page.pin_first => "code_pin_hint".to_string(),
                "pin_code" | "password_code" => format!("{key}_hint"),
                _ => String::new(),
            };
            let word = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            match brand.words.get("password").and_then(Value::as_str) {
                Some(own) => (own.to_string(), String::new()),
                None => (word(key), word(&hint_key)),
            }
        }
    };
    let html = template("login.html").and_then(|tpl| {
        tpl.render(minijinja::context! {
            lang => page.lang, t => t, app_title => page.app_title, step => page.step,
            csrf => page.csrf, error => error, username => page.username,
            ask_password => page.ask_password.is_some(), label => label, hint => hint,
            prompt => page.prompt,
            answer_type => page.answer_type, done => page.done, fatal => page.fatal,
            intro => brand.intro, help => brand.help, logo => brand.logo_url,
            hidden => page.hidden,
            brand_css => brand.css_url,
        })
    });
    let mut res = match html {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "login page not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    page_headers(&mut res);
    res
}

/// A page that says something went wrong before a sign-in could start.
/// Why a sign-in page cannot go on: each is a text of its own in every language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageError {
    /// An unknown relying party, or a redirect address it did not register.
    BadClient,
    /// A SAML message that cannot be read.
    BadSaml,
    /// Too many passwords wait to be checked: try again in a moment.
    Busy,
    /// The sign-in is over (it expired, or its state is gone).
    Expired,
    /// The user name or password was wrong.
    Failed,
    /// An unsolicited SAML response the service provider does not take.
    NoIdpInitiated,
    /// The SAML identity provider has no signing key yet.
    SamlNotSetUp,
    /// The browser has no session (any more).
    SignedOut,
    /// Too many sign-ins from this address.
    TooMany,
    /// A SAML service provider Tessera does not know.
    UnknownSp,
}

impl PageError {
    #[cfg(test)]
    const ALL: [PageError; 10] = [
        PageError::BadClient,
        PageError::BadSaml,
        PageError::Busy,
        PageError::Expired,
        PageError::Failed,
        PageError::NoIdpInitiated,
        PageError::SamlNotSetUp,
        PageError::SignedOut,
        PageError::TooMany,
        PageError::UnknownSp,
    ];

    /// The key of its text in [`texts`].
    pub(crate) fn key(self) -> &'static str {
        match self {
            PageError::BadClient => "bad_client",
            PageError::BadSaml => "bad_saml",
            PageError::Busy => "busy",
            PageError::Expired => "expired",
            PageError::Failed => "failed",
            PageError::NoIdpInitiated => "no_idp_initiated",
            PageError::SamlNotSetUp => "saml_not_set_up",
            PageError::SignedOut => "signed_out",
            PageError::TooMany => "too_many",
            PageError::UnknownSp => "unknown_sp",
        }
    }
}

/// The page that says why a sign-in cannot go on.
pub(crate) fn fatal(lang: &str, error: PageError, status: StatusCode) -> Response {
    render(
        Page {
            hidden: Vec::new(),
            lang,
            app_title: "Tessera",
            brand: None,
            step: "",
            csrf: "",
            error: Some(error.key()),
            username: "",
            ask_password: None,
            pin_first: true,
            prompt: "",
            answer_type: "text",
            done: false,
            fatal: true,
        },
        status,
    )
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../templates/login.css"),
    )
        .into_response()
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

/// `/oidc/authorize`: checks the relying party's request, then signs the user in (on the login
/// page, or at once with an SSO session that passed the client's application).
async fn authorize(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    authorize_with(state, headers, raw.as_deref()).await
}

/// `POST /oidc/authorize`: the same request, its parameters form-encoded in the body (OpenID
/// Connect Core §3.1.2.1 requires both methods).
async fn authorize_post(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        tracing::info!(
            reason = "the body is not UTF-8",
            "authorization request refused"
        );
        return fatal("en", PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    authorize_with(state, headers, Some(text)).await
}

/// Checks a relying party's authorization request; every refusal is logged with its reason
/// (the relying party's administrator reads it there: the browser only sees a short page or
/// an error sent back).
async fn authorize_with(state: St, headers: HeaderMap, raw: Option<&str>) -> Response {
    let Ok(q) = query(raw) else {
        tracing::info!(
            reason = "a parameter repeats",
            "authorization request refused"
        );
        return fatal("en", PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    let lang = lang_of(&headers, q.get("ui_locales").map(String::as_str));
    let snap = state.engine.snapshot();
    let client_id = q.get("client_id").map(String::as_str).unwrap_or("");
    let refused = |reason: &str| {
        tracing::info!(client_id = %client_id.chars().take(64).collect::<String>(), reason, "authorization request refused");
    };
    // Until the client and its redirect URI are known, errors are shown, not sent back.
    let client = q
        .get("client_id")
        .and_then(|id| snap.api_client_by_id(id))
        .filter(|c| c.kind == ApiClientKind::Oidc)
        .cloned();
    let Some(client) = client else {
        refused("no OpenID Connect client has this client_id");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    let Some(redirect_uri) = q.get("redirect_uri") else {
        refused("no redirect_uri");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        refused("the redirect_uri is not one registered for the client (exact match)");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    }
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let st = q.get("state").filter(|s| s.len() <= 512).cloned();
    if q.get("state").is_some_and(|s| s.len() > 512) {
        refused("state longer than 512 characters");
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    }
    let fail = |error: &str, description: &str| {
        refused(&format!("{error}: {description}"));
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &st {
            params.push(("state", s.as_str()));
        }
        params.push(("iss", iss.as_str()));
        redirect(&back_to(redirect_uri, &params))
    };
    if q.get("response_type").map(String::as_str) != Some("code") {
        return fail("unsupported_response_type", "only the code flow is offered");
    }
    let scope = q.get("scope").cloned().unwrap_or_default();
    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if !scopes.contains(&"openid") {
        return fail("invalid_scope", "scope must include openid");
    }
    if let Some(other) = scopes.iter().find(|s| !OIDC_SCOPES.contains(s)) {
        return fail(
            "invalid_scope",
            &format!(
                "scope '{other}' is not offered (openid, profile, email, phone, offline_access)"
            ),
        );
    }
    let scope = scopes.join(" ");
    let challenge = q.get("code_challenge").filter(|c| {
        c.len() == 43
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    // PKCE: S256 only; required unless the client's `require_pkce` is off.
    let challenge = match (
        q.get("code_challenge"),
        challenge,
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _, None) if !client.require_pkce && !client.public => String::new(),
        (None, _, None) => {
            return fail(
                "invalid_request",
                "PKCE with S256 is required (code_challenge and code_challenge_method=S256)",
            );
        }
        (None, _, Some(_)) => return fail("invalid_request", "code_challenge is missing"),
        (Some(_), Some(c), Some("S256")) => c.clone(),
        (Some(_), None, _) => {
            return fail(
                "invalid_request",
                "code_challenge must be 43 base64url characters (S256)",
            );
        }
        _ => return fail("invalid_request", "code_challenge_method must be S256"),
    };
    let challenge = &challenge;
    if q.get("nonce").is_some_and(|n| n.len() > 256) {
        return fail("invalid_request", "nonce longer than 256 characters");
    }
    let nonce = q.get("nonce").cloned();
    let max_age = match q.get("max_age").map(|m| m.parse::<i64>()) {
        None => None,
        Some(Ok(m)) if m >= 0 => Some(m),
        Some(_) => return fail("invalid_request", "max_age must be a number of seconds"),
    };
    let Some(app) = client.application.clone() else {
        return fail("server_error", "the client has no application");
    };
    let now = state.engine.clock().now();
    let prompts: Vec<&str> = q
        .get("prompt")
        .map(|p| p.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if prompts.contains(&"none") && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none goes with no other value");
    }
    // An SSO session that passed this application's factors (recently enough, when max_age
    // asks) signs the user in at once.
    if !prompts.contains(&"login")
        && let Some(key) = cookie(&state, &headers, SSO_COOKIE)
        && let Some(session) = live_session(&state, &key).await
        && session.apps.contains(&app.0)
        && max_age.is_none_or(|m| now - session.auth_time < m)
        && serves_app(&snap, &app, &session, now)
    {
        touch_session(&state, &key).await;
        let code = AuthCode {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.clone(),
            nonce,
            user: session.user.clone(),
            realm: session.realm.clone(),
            scope,
            auth_time: session.auth_time,
            sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
        };
        let res = match issue_code(&state, &code, st.as_deref(), &iss).await {
            Ok(res) => res,
            Err(res) => return res,
        };
        remember_oidc(&state, &key, &client.client_id).await;
        return res;
    }
    if prompts.contains(&"none") {
        return fail("login_required", "no session for this application");
    }
    let key = state.engine.sso().new_key();
    let flow = Flow {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: st.clone(),
        nonce,
        code_challenge: challenge.clone(),
        scope,
        app: app.0.clone(),
        lang,
        csrf: state.engine.sso().new_key(),
        tx: None,
        user: None,
        prompt: None,
        dummy: false,
        max_age,
        saml: None,
        account: false,
    };
    begin(&state, &key, &flow).await
}

/// Keeps a new login flow and sends the browser to the login page with its cookie.
pub(crate) async fn begin(state: &HttpState, key: &str, flow: &Flow) -> Response {
    let now = state.engine.clock().now();
    let lifetime = i64::from(state.engine.snapshot().settings.api_session_minutes) * 60;
    if let Err(res) = save_flow(state, key, flow, now + lifetime).await {
        return res;
    }
    let mut res = redirect("/login");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, FLOW_COOKIE, key, lifetime),
    );
    res
}

async fn save_flow(
    state: &HttpState,
    key: &str,
    flow: &Flow,
    expires_at: i64,
) -> Result<(), Response> {
    state
        .engine
        .sso()
        .keep_flow(key, flow, expires_at)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "login flow not kept");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })
}

async fn load_flow(state: &HttpState, headers: &HeaderMap) -> Option<(String, Flow, i64)> {
    let key = cookie(state, headers, FLOW_COOKIE)?;
    let (flow, expires_at) = state.engine.sso().flow(&key).await.ok()??;
    Some((key, flow, expires_at))
}

/// The live SSO session behind a cookie (idle and absolute limits checked; the user still
/// active is checked when a code is traded).
pub(crate) async fn live_session(state: &HttpState, key: &str) -> Option<Session> {
    live_session_until(state, key).await.map(|(s, _)| s)
}

/// The same, with when the session ends.
async fn live_session_until(state: &HttpState, key: &str) -> Option<(Session, i64)> {
    let limits = SessionLimits::of(&state.engine.snapshot().settings);
    state.engine.sso().session(key, limits).await.ok()?
}

/// The application's own SSO limits (shorter than the settings', which `live_session`
/// checks) allow the session: signed in recently enough, used recently enough.
pub(crate) fn serves_app(
    snap: &tessera_core::engine::Snapshot,
    app: &tessera_core::ids::AppName,
    session: &Session,
    now: i64,
) -> bool {
    let Some(def) = snap.application(app) else {
        return false;
    };
    let minutes = |m: Option<u32>| m.map(|m| i64::from(m) * 60);
    minutes(def.sso_session_minutes).is_none_or(|l| now - session.auth_time < l)
        && minutes(def.sso_idle_minutes).is_none_or(|i| now - session.last_seen < i)
}

/// Records in an SSO session that it signed in to a SAML service provider (the last sign-in
/// there replaces an earlier one), for single logout.
pub(crate) async fn remember_saml(
    state: &HttpState,
    key: &str,
    joined: tessera_core::model::SamlParticipant,
) {
    if let Err(e) = state.engine.sso().remember_saml(key, joined).await {
        tracing::warn!(error = %e, "SSO session's SAML sign-in not recorded");
    }
}

/// Records in an SSO session that it signed in to an OIDC client (for back-channel logout).
async fn remember_oidc(state: &HttpState, key: &str, client_id: &str) {
    if let Err(e) = state.engine.sso().remember_oidc(key, client_id).await {
        tracing::warn!(error = %e, "SSO session's OIDC sign-in not recorded");
    }
}

/// Ends the SSO session behind a cookie key; returns it. `how` says who ended it, for the
/// audit record.
pub(crate) async fn end_session(state: &HttpState, key: &str, how: &str) -> Option<Session> {
    state.engine.sso().end(key, how).await.ok()?
}

/// An audit record of single sign-on: a sign-in given to a relying party, a session ended.
pub(crate) async fn audit_sso(
    state: &HttpState,
    action: &str,
    actor: &str,
    user: &str,
    realm: &str,
    application: Option<&str>,
    reason: &str,
) {
    state
        .engine
        .sso()
        .audit(action, actor, (user, realm), application, reason)
        .await;
}

/// Marks an SSO session used now (its idle limit starts again); its end stays.
pub(crate) async fn touch_session(state: &HttpState, key: &str) {
    if let Err(e) = state.engine.sso().touch(key).await {
        tracing::warn!(error = %e, "SSO session not marked used");
    }
}

pub(crate) fn app_title(state: &HttpState, app: &str) -> String {
    state
        .engine
        .snapshot()
        .application(&tessera_core::ids::AppName(app.to_string()))
        .map(|a| {
            if a.description.is_empty() {
                a.name.0.clone()
            } else {
                a.description.clone()
            }
        })
        .unwrap_or_else(|| app.to_string())
}

/// An application's branding as a page shows it.
#[derive(Debug, Default)]
pub(crate) struct Brand {
    /// The heading: the branding's title, else the application's description or name.
    pub(crate) title: String,
    intro: Option<String>,
    help: Option<String>,
    logo_url: Option<String>,
    css_url: Option<String>,
    /// Page texts the branding rewords.
    words: serde_json::Map<String, Value>,
}

pub(crate) fn brand(state: &HttpState, app: &str, lang: &str) -> Brand {
    let snap = state.engine.snapshot();
    let def = snap.application(&tessera_core::ids::AppName(app.to_string()));
    let mut out = Brand {
        title: app_title(state, app),
        ..Brand::default()
    };
    let Some(b) = def.and_then(|a| a.branding.as_ref()) else {
        return out;
    };
    // Paths by the application's name as stored (names are checked: letters, digits, - _ .).
    let name = def.map(|a| a.name.0.clone()).unwrap_or_default();
    if let Some(t) = b.text(lang, "title") {
        out.title = t.to_string();
    }
    out.intro = b.text(lang, "intro").map(str::to_string);
    out.help = b.text(lang, "help").map(str::to_string);
    if b.logo.is_some() {
        out.logo_url = Some(format!("/login/brand/{name}/logo"));
    }
    if b.primary_color.is_some() || b.background_color.is_some() {
        out.css_url = Some(format!("/login/brand/{name}/style.css"));
    }
    for key in ["username", "password", "answer", "continue"] {
        if let Some(t) = b.text(lang, key) {
            out.words.insert(key.into(), Value::String(t.to_string()));
        }
    }
    out
}

fn branding_of(state: &HttpState, app: &str) -> Option<tessera_core::model::Branding> {
    state
        .engine
        .snapshot()
        .application(&tessera_core::ids::AppName(app.to_string()))
        .and_then(|a| a.branding.clone())
}

/// `/login/brand/{app}/logo`: the application's logo (an SVG cannot run anything: no script
/// may run in it, and it is sandboxed).
async fn brand_logo(state: St, Path(app): Path<String>) -> Response {
    let Some((kind, bytes)) = branding_of(&state, &app).and_then(|b| b.logo_image()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            ),
        ],
        bytes,
    )
        .into_response()
}

/// `/login/brand/{app}/style.css`: the application's colours (checked `#rrggbb` values only).
async fn brand_style(state: St, Path(app): Path<String>) -> Response {
    let Some(b) = branding_of(&state, &app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut css = String::new();
    if let Some(c) = b
        .primary_color
        .as_deref()
        .filter(|c| tessera_core::model::branding::is_color(c))
    {
        css.push_str(&format!(
            "button {{ background: {c}; }}\ninput:focus, button:focus {{ outline-color: {c}; }}\n"
        ));
    }
    if let Some(c) = b
        .background_color
        .as_deref()
        .filter(|c| tessera_core::model::branding::is_color(c))
    {
        css.push_str(&format!("body {{ background: {c}; }}\n"));
    }
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        css,
    )
        .into_response()
}

/// What the first page asks for beside the user name, as the key of its words: `password`,
/// `pin_code` (the token PIN and a code, in one field), `password_code` (the password and a
/// code) or `password_or_code` (either, by the user's means); none when the first factor sends
/// a code once the user is named.
fn first_answer(state: &HttpState, app: &str) -> Option<&'static str> {
    use tessera_core::model::Method;
    let snap = state.engine.snapshot();
    let Some(first) = snap
        .application(&tessera_core::ids::AppName(app.to_string()))
        .and_then(|a| a.factors.first())
    else {
        return Some("password");
    };
    let typed: Vec<Method> = first
        .all_methods()
        .filter(|m| m.channel().is_none())
        .collect();
    let pin_code = typed.contains(&Method::SoftOtp);
    let password_code = typed.contains(&Method::PasswordOtp);
    let password = typed.iter().any(|m| !m.uses_otp());
    match (password, password_code, pin_code) {
        (false, false, false) => None,
        (false, false, true) => Some("pin_code"),
        (false, true, false) => Some("password_code"),
        (true, false, false) => Some("password"),
        _ => Some("password_or_code"),
    }
}

/// The first page of a sign-in (the user name, and what the first factor asks for), with the
/// words of a failed first step fitting what was asked.
fn first_page<'a>(
    state: &HttpState,
    flow: &'a Flow,
    brand: &'a Brand,
    error: Option<&'a str>,
) -> Page<'a> {
    let answer = first_answer(state, &flow.app);
    let error = match (error, answer) {
        (Some("failed"), Some("pin_code" | "password_code" | "password_or_code")) => {
            Some("failed_code")
        }
        (e, _) => e,
    };
    Page {
        ask_password: answer,
        pin_first: state.engine.snapshot().settings.prepend_pin,
        ..flow_page(flow, brand, error)
    }
}

fn flow_page<'a>(flow: &'a Flow, brand: &'a Brand, error: Option<&'a str>) -> Page<'a> {
    Page {
        hidden: Vec::new(),
        lang: &flow.lang,
        app_title: &brand.title,
        brand: Some(brand),
        step: if flow.tx.is_some() {
            "answer"
        } else {
            "identify"
        },
        csrf: &flow.csrf,
        error,
        username: flow.user.as_deref().unwrap_or(""),
        ask_password: None,
        pin_first: true,
        prompt: flow.prompt.as_deref().unwrap_or(""),
        answer_type: "text",
        done: false,
        fatal: false,
    }
}

async fn login_page(state: St, headers: HeaderMap) -> Response {
    let Some((_, flow, _)) = load_flow(&state, &headers).await else {
        let lang = lang_of(&headers, None);
        // Opened directly (no sign-in under way): the user's own account pages.
        if cookie(&state, &headers, FLOW_COOKIE).is_none() {
            return account_sign_in(&state, &headers, &lang).await;
        }
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    let title = flow_brand(&state, &flow);
    let page = if flow.tx.is_some() {
        flow_page(&flow, &title, None)
    } else {
        first_page(&state, &flow, &title, None)
    };
    render(page, StatusCode::OK)
}

/// The branding of a sign-in's pages; a sign-in to the account pages is headed as such unless
/// the application's branding names it.
fn flow_brand(state: &HttpState, flow: &Flow) -> Brand {
    let mut b = brand(state, &flow.app, &flow.lang);
    let branded_title =
        branding_of(state, &flow.app).is_some_and(|br| br.text(&flow.lang, "title").is_some());
    if flow.account && !branded_title {
        let t = texts(&flow.lang);
        b.title = t["account"].as_str().unwrap_or_default().to_string();
        if b.intro.is_none() {
            b.intro = t["account_intro"].as_str().map(str::to_string);
        }
    }
    b
}

/// `/login` opened directly: a browser with a live SSO session goes to its sessions; else a
/// sign-in through the `account_application` setting's application starts, which ends there.
/// With that setting empty, the page says that sign-ins start at an application.
async fn account_sign_in(state: &HttpState, headers: &HeaderMap, lang: &str) -> Response {
    if let Some(key) = cookie(state, headers, SSO_COOKIE)
        && live_session(state, &key).await.is_some()
    {
        return redirect("/login/sessions");
    }
    let snap = state.engine.snapshot();
    let app = snap.settings.account_application.clone();
    if app.is_empty()
        || snap
            .application(&tessera_core::ids::AppName(app.clone()))
            .is_none()
    {
        return home_page(state, lang);
    }
    let key = state.engine.sso().new_key();
    let flow = Flow {
        account: true,
        ..Flow::without_oidc(state, &app, lang)
    };
    // The page itself, not a redirect to it: a browser that keeps no cookies would be sent
    // round in circles.
    let now = state.engine.clock().now();
    let lifetime = i64::from(state.engine.snapshot().settings.api_session_minutes) * 60;
    if let Err(res) = save_flow(state, &key, &flow, now + lifetime).await {
        return res;
    }
    let title = flow_brand(state, &flow);
    let mut res = render(first_page(state, &flow, &title, None), StatusCode::OK);
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, FLOW_COOKIE, &key, lifetime),
    );
    res
}

/// `/`: what this server is, and where a user goes from here (nothing about its
/// configuration).
async fn home(state: St, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers, None);
    home_page(&state, &lang)
}

fn home_page(state: &HttpState, lang: &str) -> Response {
    let account = !state
        .engine
        .snapshot()
        .settings
        .account_application
        .is_empty();
    plain_page(
        "home.html",
        minijinja::context! { lang => lang, t => texts(lang), account => account },
    )
}

/// A page template filled in, with the strict headers of every page.
fn plain_page(name: &str, context: minijinja::Value) -> Response {
    let mut res = match template(name).and_then(|tpl| tpl.render(context)) {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template = name, "page not rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    page_headers(&mut res);
    res
}

async fn login_post(
    state: St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(form) = query(std::str::from_utf8(&body).ok()) else {
        let lang = lang_of(&headers, None);
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    let Some((key, mut flow, expires_at)) = load_flow(&state, &headers).await else {
        let lang = lang_of(&headers, None);
        return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST);
    };
    // The form must come from the page this browser was shown (login CSRF).
    if !same_token(form.get("csrf"), &flow.csrf) {
        return fatal(&flow.lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    let title = flow_brand(&state, &flow);
    let answer = form.get("answer").cloned().unwrap_or_default();
    // No password or code is this long (as at the password grant): not worth hashing.
    if answer.len() > 1024 {
        let first = flow.tx.is_none();
        let page = if first {
            first_page(&state, &flow, &title, Some("failed"))
        } else {
            flow_page(&flow, &title, Some("wrong"))
        };
        return render(page, StatusCode::OK);
    }
    let ip = state.client_ip(peer, &headers, None);
    let ctx = RequestCtx {
        client_ip: Some(ip),
        application: Some(tessera_core::ids::AppName(flow.app.clone())),
        actor: "web".into(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        ..RequestCtx::new(Door::Web)
    };
    let req = match (&flow.tx, &flow.user) {
        (Some(tx), Some(user)) => AuthRequest {
            user: Some(user.clone()),
            transaction_id: tessera_core::ids::TransactionId::parse(tx),
            pass: zeroize::Zeroizing::new(answer),
            ..Default::default()
        },
        _ => {
            let username = form
                .get("username")
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty() && tessera_core::ids::login_name_ok(u));
            let Some(username) = username else {
                let page = first_page(&state, &flow, &title, Some("failed"));
                return render(page, StatusCode::OK);
            };
            flow.user = Some(username.clone());
            AuthRequest {
                user: Some(username),
                pass: zeroize::Zeroizing::new(answer),
                ..Default::default()
            }
        }
    };
    let first_step = flow.tx.is_none();
    let code_first = first_answer(&state, &flow.app).is_none();
    // A sign-in whose answers cannot finish (an unknown user's code page) is answered alike.
    if flow.dummy {
        return render(flow_page(&flow, &title, Some("wrong")), StatusCode::OK);
    }
    let outcome = match state.engine.authenticate(&req, &ctx).await {
        Ok(o) => o,
        // A user without the phone or mail a code needs: like an unknown user.
        Err(tessera_core::engine::EngineError::Channel(_)) if first_step && code_first => {
            return code_page_for_nobody(&state, &key, flow, expires_at, &title).await;
        }
        Err(e) if e.is_busy() => {
            tracing::warn!(error = %e, "web login shed");
            let mut res = fatal(&flow.lang, PageError::Busy, StatusCode::SERVICE_UNAVAILABLE);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        Err(e) => {
            tracing::error!(error = %e, "web login failed");
            return fatal(
                &flow.lang,
                PageError::Expired,
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    match outcome {
        Outcome::Reject(_) if first_step && code_first => {
            code_page_for_nobody(&state, &key, flow, expires_at, &title).await
        }
        Outcome::Accept(a) => finish_login(&state, &headers, &key, &flow, &a, ip).await,
        Outcome::Challenge(c) => {
            flow.tx = Some(c.transaction_id.as_str().to_string());
            flow.user = Some(c.user.username.clone());
            flow.prompt = Some(c.message.clone());
            if let Err(res) = save_flow(&state, &key, &flow, expires_at).await {
                return res;
            }
            render(flow_page(&flow, &title, None), StatusCode::OK)
        }
        Outcome::Reject(r) => {
            // A lock is said as such: unknown names lock alike, so it tells nobody who exists.
            let error = match (&flow.tx, r.reason) {
                (_, RejectReason::Locked) => "locked",
                (None, _) => "failed",
                (Some(_), RejectReason::BadTransaction | RejectReason::SessionRetries) => "expired",
                (Some(_), _) => "wrong",
            };
            if flow.tx.is_none() || error == "expired" || error == "locked" {
                // Back to the start: the user is named again.
                flow.tx = None;
                flow.prompt = None;
                if let Err(res) = save_flow(&state, &key, &flow, expires_at).await {
                    return res;
                }
            }
            let page = if flow.tx.is_none() {
                first_page(&state, &flow, &title, Some(error))
            } else {
                flow_page(&flow, &title, Some(error))
            };
            render(page, StatusCode::OK)
        }
    }
}

/// The page a known user would see after a code was sent, for a user who gets none (unknown,
/// or without a phone): nothing tells them apart (DESIGN §5); no answer finishes it.
async fn code_page_for_nobody(
    state: &HttpState,
    key: &str,
    mut flow: Flow,
    expires_at: i64,
    title: &Brand,
) -> Response {
    let snap = state.engine.snapshot();
    let method = snap
        .application(&tessera_core::ids::AppName(flow.app.clone()))
        .and_then(|a| a.factors.first())
        .and_then(|f| f.all_methods().next())
        .unwrap_or(tessera_core::model::Method::SmsOtp);
    let channel = tessera_core::engine::expected_channel(&snap.settings, method, None, false)
        .unwrap_or(tessera_core::model::Channel::Sms);
    flow.tx = Some(tessera_core::rng::random_digits(
        state.engine.rng(),
        tessera_core::ids::TransactionId::LEN,
    ));
    flow.prompt = Some(tessera_core::engine::code_prompt(channel).message);
    flow.dummy = true;
    if let Err(res) = save_flow(state, key, &flow, expires_at).await {
        return res;
    }
    render(flow_page(&flow, title, None), StatusCode::OK)
}

/// The user passed every factor: the SSO session (new, or the browser's own for the same user
/// gains the application), the code, and back to the relying party.
async fn finish_login(
    state: &HttpState,
    headers: &HeaderMap,
    flow_key: &str,
    flow: &Flow,
    accepted: &tessera_core::engine::Accepted,
    ip: std::net::IpAddr,
) -> Response {
    let (user, realm, mfa) = (
        accepted.user.username.as_str(),
        accepted.realm.as_str(),
        accepted.mfa,
    );
    let now = state.engine.clock().now();
    let settings = state.engine.snapshot().settings.clone();
    // An OIDC sign-in needs the issuer for its code: checked before anything is kept.
    let iss = if flow.saml.is_none() && !flow.account {
        match issuer(state) {
            Ok(i) => Some(i),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let existing = cookie(state, headers, SSO_COOKIE);
    let signed_in = state
        .engine
        .sso()
        .sign_in(
            SignIn {
                existing: existing.as_deref(),
                user,
                realm,
                app: &flow.app,
                mfa,
                client_ip: ip.to_string(),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(256).collect())
                    .unwrap_or_default(),
            },
            SessionLimits::of(&settings),
        )
        .await;
    let SignedIn {
        key: session_key,
        session,
        expires_at,
        ended,
    } = match signed_in {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "SSO session not kept");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    // Another user's session ended here: its OIDC relying parties are told by back-channel
    // (its SAML service providers cannot be, in the middle of this sign-in: logged).
    if let Some(other) = &ended {
        crate::backchannel::notify(state, std::slice::from_ref(other));
        if !other.saml.is_empty() {
            tracing::info!(
                user = %other.user,
                sps = other.saml.len(),
                "another user signed in: the previous SSO session ended without SAML logout"
            );
        }
    }
    if let Err(e) = state.engine.sso().end_flow(flow_key).await {
        tracing::warn!(error = %e, "finished login flow not removed");
    }
    if let Some(pending) = &flow.saml {
        let (res, joined) = crate::saml::answer(
            state,
            &flow.lang,
            pending,
            &flow.app,
            user,
            realm,
            session.auth_time,
            mfa,
        )
        .await;
        if let Some(p) = joined {
            remember_saml(state, &session_key, p).await;
        }
        return with_session(state, res, &session_key, expires_at - now);
    }
    let Some(iss) = iss else {
        // A sign-in to the account pages: on to the user's sessions.
        let res = redirect("/login/sessions");
        return with_session(state, res, &session_key, expires_at - now);
    };
    let code = AuthCode {
        client_id: flow.client_id.clone(),
        redirect_uri: flow.redirect_uri.clone(),
        code_challenge: flow.code_challenge.clone(),
        nonce: flow.nonce.clone(),
        user: user.to_string(),
        realm: realm.to_string(),
        scope: flow.scope.clone(),
        auth_time: session.auth_time,
        sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
    };
    let res = match issue_code(state, &code, flow.state.as_deref(), &iss).await {
        Ok(res) => {
            remember_oidc(state, &session_key, &flow.client_id).await;
            res
        }
        Err(res) => res,
    };
    with_session(state, res, &session_key, expires_at - now)
}

/// The end of a sign-in: the browser keeps the SSO session's cookie and drops the flow's.
fn with_session(state: &HttpState, mut res: Response, key: &str, max_age: i64) -> Response {
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(state, SSO_COOKIE, key, max_age),
    );
    h.append(header::SET_COOKIE, set_cookie(state, FLOW_COOKIE, "", 0));
    res
}

/// The OIDC subject of a user: the user source and the user's id in it — unique across realms
/// and never given to another user (a login name may be, after a deletion).
pub(crate) fn subject(user: &tessera_core::model::User) -> String {
    format!("{}/{}", user.source, user.id)
}

/// Keeps a single-use code for the relying party and sends the browser back with it.
async fn issue_code(
    state: &HttpState,
    code: &AuthCode,
    st: Option<&str>,
    iss: &str,
) -> Result<Response, Response> {
    let value = state
        .engine
        .sso()
        .issue_code(code, CODE_SECONDS)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "authorization code not kept");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })?;
    let mut params = vec![("code", value.as_str())];
    if let Some(s) = st {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    Ok(redirect(&back_to(&code.redirect_uri, &params)))
}

/// A form's token is the one expected (compared in constant time).
fn same_token(given: Option<&String>, want: &str) -> bool {
    given.is_some_and(|c| {
        c.len() == want.len()
            && bool::from(subtle::ConstantTimeEq::ct_eq(c.as_bytes(), want.as_bytes()))
    })
}

/// The token a sign-out form carries: only a page of this browser's session knows it.
fn logout_token(session_key: &str) -> String {
    hash(&format!("logout\u{1f}{session_key}"))
}

/// `GET /logout`: asks before ending the SSO session (a link on another site must not sign the
/// user out).
/// Where a relying party asks its users to be sent after signing out (RP-Initiated Logout):
/// the registered address with the state, or why not.
fn after_logout(state: &HttpState, q: &HashMap<String, String>) -> Result<Option<String>, ()> {
    let Some(uri) = q.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    // The client: named, or the audience of the ID token hint (read only to find the client:
    // the address must be registered for it either way).
    let hinted = q.get("id_token_hint").and_then(|t| {
        let part = t.split('.').nth(1)?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(part.as_bytes())
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        claims["aud"].as_str().map(str::to_string)
    });
    let snap = state.engine.snapshot();
    let client = q
        .get("client_id")
        .cloned()
        .or(hinted)
        .and_then(|id| snap.api_client_by_id(&id).cloned())
        .filter(|c| c.kind == ApiClientKind::Oidc)
        .ok_or(())?;
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return Err(());
    }
    let st = q.get("state").filter(|s| s.len() <= 512);
    Ok(Some(match st {
        Some(s) => back_to(uri, &[("state", s.as_str())]),
        None => uri.clone(),
    }))
}

async fn logout_page(state: St, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let lang = lang_of(&headers, None);
    let Ok(q) = query(raw.as_deref()) else {
        return fatal(&lang, PageError::BadClient, StatusCode::BAD_REQUEST);
    };
    // A return address the client did not register (or no such client): the user is still
    // signed out, and stays on Tessera's signed-out page instead of being sent anywhere.
    let then = match after_logout(&state, &q) {
        Ok(then) => then,
        Err(()) => {
            tracing::info!(
                client_id = %q.get("client_id").map(|c| c.chars().take(64).collect::<String>()).unwrap_or_default(),
                "logout: post_logout_redirect_uri is not registered for the client; the user stays at Tessera's signed-out page"
            );
            None
        }
    };
    if cookie(&state, &headers, SSO_COOKIE).is_none()
        && let Some(then) = then
    {
        return redirect(&then);
    }
    let mut hidden = Vec::new();
    for k in [
        "client_id",
        "id_token_hint",
        "post_logout_redirect_uri",
        "state",
    ] {
        if then.is_some()
            && let Some(v) = q.get(k)
        {
            hidden.push((k, v.clone()));
        }
    }
    ask_logout_with(&state, &headers, hidden).await
}

/// The page that asks whether to sign out (the form's token only this browser's page has).
pub(crate) async fn ask_logout(state: &HttpState, headers: &HeaderMap) -> Response {
    ask_logout_with(state, headers, Vec::new()).await
}

async fn ask_logout_with(
    state: &HttpState,
    headers: &HeaderMap,
    hidden: Vec<(&'static str, String)>,
) -> Response {
    let lang = lang_of(headers, None);
    let Some(key) = cookie(state, headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let token = logout_token(&key);
    render(
        Page {
            hidden,
            lang: &lang,
            app_title: "Tessera",
            brand: None,
            step: "logout",
            csrf: &token,
            error: None,
            username: "",
            ask_password: None,
            pin_first: true,
            prompt: "",
            answer_type: "text",
            done: false,
            fatal: false,
        },
        StatusCode::OK,
    )
}

/// `POST /logout`: ends the browser's SSO session.
async fn logout(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers, None);
    let form = query(std::str::from_utf8(&body).ok()).unwrap_or_default();
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let want = logout_token(&key);
    if !same_token(form.get("csrf"), &want) {
        return fatal(&lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    // Where the relying party asked its user to go afterwards (checked again here).
    let then = after_logout(&state, &form).ok().flatten();
    let ended = end_session(&state, &key, "signed out at /logout").await;
    if let Some(s) = &ended {
        crate::backchannel::notify(&state, std::slice::from_ref(s));
    }
    // The SAML service providers the session signed in to are told, through this browser.
    let mut res = match (ended, &then) {
        (Some(s), _) if !s.saml.is_empty() => {
            crate::saml::logout_everywhere(&state, &lang, s.saml, then.clone()).await
        }
        (_, Some(then)) => redirect(then),
        _ => fatal(&lang, PageError::SignedOut, StatusCode::OK),
    };
    res.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, SSO_COOKIE, "", 0));
    res
}

/// An authorization code presented again after it bought tokens: by its own client with its
/// PKCE verifier, what it bought is revoked and the event audited (see
/// [`tessera_core::sso::Sso::code_presented_again`]); by anyone else nothing happens.
async fn spent_code_again(state: &HttpState, client: &ApiClient, code: &str, verifier: &str) {
    let reused = match state
        .engine
        .sso()
        .code_presented_again(code, &client.client_id, verifier)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "reused code not checked");
            return;
        }
    };
    tracing::warn!(client = %client.name, user = %reused.spent.user,
        "authorization code used twice: the access token it bought is revoked");
    crate::oauth::audit_reuse(
        state,
        client,
        "oidc_code_reused",
        (reused.spent.user, reused.spent.realm),
        if reused.revoked { "ok" } else { "error" },
        "authorization code presented again: its access token is revoked".into(),
    )
    .await;
}

/// The authorization_code grant at `/oauth/token` (OIDC clients): the code, once, for the
/// client it was issued to, with the same redirect URI and the PKCE verifier.
pub(crate) async fn code_grant(
    state: &HttpState,
    client: &ApiClient,
    params: &HashMap<String, String>,
) -> Response {
    let bad = |why: &str| OAuthError::InvalidGrant(String::from(why)).into_response();
    if client.kind != ApiClientKind::Oidc {
        return OAuthError::UnauthorizedClient(
            "only OIDC clients use the authorization code grant".into(),
        )
        .into_response();
    }
    let (Some(code), Some(redirect_uri)) = (params.get("code"), params.get("redirect_uri")) else {
        return OAuthError::InvalidRequest(
            "code and redirect_uri are required (and code_verifier when PKCE was used)".into(),
        )
        .into_response();
    };
    let verifier = params
        .get("code_verifier")
        .map(String::as_str)
        .unwrap_or("");
    // An RS256 client needs the RSA key: without it the code is not used up for nothing.
    let rsa = match client.id_token_alg.as_deref() {
        Some("RS256") => match crate::rsa_key::signer(state).await {
            Ok(Some(rsa)) => Some(rsa),
            Ok(None) => {
                tracing::error!(client = %client.name, "no RS256 key: import one with tessera oidc import-key");
                return OAuthError::Server("no signing key for this client's ID tokens".into())
                    .into_response();
            }
            Err(e) => {
                tracing::error!(error = %e, "RS256 key unavailable");
                return unavailable();
            }
        },
        _ => None,
    };
    let now = state.engine.clock().now();
    let c = match state.engine.sso().redeem_code(code).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            spent_code_again(state, client, code, verifier).await;
            return bad("unknown, expired or used code");
        }
        Err(e) => {
            tracing::error!(error = %e, "code not read");
            return unavailable();
        }
    };
    if c.client_id != client.client_id || c.redirect_uri != *redirect_uri {
        return bad("the code was issued to another client or redirect URI");
    }
    // A code asked for with PKCE needs its verifier; one asked for without (a client whose
    // require_pkce is off) takes none.
    match (c.code_challenge.is_empty(), verifier.is_empty()) {
        // A public client has nothing else to prove the code is its own.
        (true, _) if client.public => {
            return bad("a public client's code needs PKCE");
        }
        (true, true) => {}
        (true, false) => {
            return bad("code_verifier given, but the code was asked for without PKCE");
        }
        (false, _) if !pkce_matches(verifier, &c.code_challenge) => {
            return bad("code_verifier does not match the code_challenge (PKCE S256)");
        }
        (false, _) => {}
    }
    let lifetime = i64::from(client.token_lifetime_seconds);
    let rng = state.engine.rng();
    let jti = tessera_core::rng::random_hex(rng, 16);
    // What the code buys, kept before anything is awaited (a copy of the code presented
    // meanwhile must find it) and while the access token lives: the code presented again
    // revokes it (RFC 6749 §4.1.2). Kept though the trade may still fail: its token then
    // never exists.
    let spent = SpentCode {
        client_id: c.client_id.clone(),
        code_challenge: c.code_challenge.clone(),
        jti: jti.clone(),
        user: c.user.clone(),
        realm: c.realm.clone(),
        expires_at: now + lifetime,
    };
    if let Err(e) = state.engine.sso().keep_spent_code(code, &spent).await {
        tracing::warn!(error = %e, "spent code not remembered");
    }
    // The user must still be able to sign in.
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(c.realm.clone());
    let user = match state.engine.find_user(&snap, &realm, &c.user).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => return bad("the user can no longer sign in"),
        Err(e) => {
            tracing::warn!(error = %e, "code: user not looked up");
            return unavailable();
        }
    };
    let signer = match token_signer(state).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let iss = match issuer(state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let access = json!({
        "iss": iss, "sub": c.user, "realm": c.realm, "aud": "tessera",
        "client_id": client.client_id, "scope": c.scope, "role": "USER",
        "iat": now, "exp": now + lifetime, "jti": jti,
    });
    let mut id = json!({
        "iss": iss, "sub": subject(&user), "aud": client.client_id, "azp": client.client_id,
        "iat": now, "exp": now + lifetime.min(3600), "auth_time": c.auth_time,
        "jti": tessera_core::rng::random_hex(rng, 16),
    });
    if let (Some(n), Some(obj)) = (&c.nonce, id.as_object_mut()) {
        obj.insert("nonce".into(), Value::String(n.clone()));
    }
    if let (Some(sid), Some(obj)) = (&c.sid, id.as_object_mut()) {
        obj.insert("sid".into(), Value::String(sid.clone()));
    }
    let id_token = match &rsa {
        Some(rsa) => rsa.sign_typed(&id, "JWT"),
        None => signer.sign_typed(&id, "JWT"),
    };
    if let Err(e) = &id_token {
        tracing::error!(error = %e, client = %client.name, "ID token not signed");
    }
    let (Ok(access), Ok(id_token)) = (signer.sign_typed(&access, "at+jwt"), id_token) else {
        return OAuthError::Server("signing failed".into()).into_response();
    };
    audit_sso(
        state,
        "oidc_sign_in",
        &format!("oidc:{}", client.name),
        &c.user,
        &c.realm,
        client.application.as_ref().map(|a| a.0.as_str()),
        &format!(
            "ID token issued to the OpenID Connect client {} (scope {})",
            client.name, c.scope
        ),
    )
    .await;
    let mut body = json!({
        "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
        "scope": c.scope, "id_token": id_token,
    });
    // Offline access: a refresh token, single use, renewed at each refresh, ending
    // `oidc_refresh_days` after the sign-in.
    if c.scope.split(' ').any(|s| s == "offline_access") {
        let days = i64::from(state.engine.snapshot().settings.oidc_refresh_days);
        match keep_refresh_token(
            state,
            client,
            &c.user,
            &c.realm,
            &c.scope,
            now + days * 86_400,
        )
        .await
        {
            Ok(refresh) => {
                if let Some(obj) = body.as_object_mut() {
                    obj.insert("refresh_token".into(), Value::String(refresh));
                }
            }
            Err(e) => return e.into_response(),
        }
    }
    let mut res = axum::Json(body).into_response();
    no_store(&mut res);
    res
}

/// The refresh_token grant of an OIDC client (`offline_access`): a new access token for a
/// user who can still sign in, for the same or fewer scopes, and a new refresh token with the
/// same scope and end; the one presented is spent (`kept`, already taken by the caller).
pub(crate) async fn oidc_refresh(
    state: &HttpState,
    client: &ApiClient,
    kept: tessera_core::store::RefreshToken,
    asked_scope: Option<&String>,
) -> Response {
    let bad = |why: &str| OAuthError::InvalidGrant(String::from(why)).into_response();
    let now = state.engine.clock().now();
    let snap = state.engine.snapshot();
    let realm = tessera_core::ids::RealmName(kept.realm.clone());
    match state.engine.find_user(&snap, &realm, &kept.username).await {
        Ok(Some(u)) if u.is_active(now) => {}
        Ok(_) => return bad("the user can no longer sign in"),
        Err(e) => {
            tracing::warn!(error = %e, "refresh: user not looked up");
            return unavailable();
        }
    }
    let scope = asked_scope.unwrap_or(&kept.scope);
    let signer = match token_signer(state).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let iss = match issuer(state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let lifetime = i64::from(client.token_lifetime_seconds);
    let jti = tessera_core::rng::random_hex(state.engine.rng(), 16);
    let access = json!({
        "iss": iss, "sub": kept.username, "realm": kept.realm, "aud": "tessera",
        "client_id": client.client_id, "scope": scope, "role": "USER",
        "iat": now, "exp": now + lifetime, "jti": jti,
    });
    let Ok(access) = signer.sign_typed(&access, "at+jwt") else {
        return OAuthError::Server("signing failed".into()).into_response();
    };
    let refresh = match keep_refresh_token(
        state,
        client,
        &kept.username,
        &kept.realm,
        &kept.scope,
        kept.expires_at,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut res = axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": lifetime,
        "scope": scope, "refresh_token": refresh,
    }))
    .into_response();
    no_store(&mut res);
    res
}

/// `/oidc/userinfo`: the signed-in user's claims, by the scopes of the access token.
/// `/oidc/userinfo`: the access token as a bearer header, or (POST) as the form parameter
/// `access_token` (RFC 6750 §2.2) — one of the two.
async fn userinfo(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let form_token = std::str::from_utf8(&body)
        .ok()
        .filter(|b| !b.is_empty())
        .and_then(|b| query(Some(b)).ok())
        .and_then(|f| f.get("access_token").cloned());
    let token = match (crate::oauth::bearer(&headers), form_token.as_deref()) {
        (Some(_), Some(_)) => {
            return OAuthError::InvalidRequest(
                "the access token goes in the header or the body, not both".into(),
            )
            .into_response();
        }
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return invalid_token("an access token is required").into_response(),
    };
    let Some(claims) = active_claims(&state, token).await else {
        return invalid_token("the token is not valid (expired, revoked or not ours)")
            .into_response();
    };
    let scopes: Vec<&str> = claims["scope"].as_str().unwrap_or("").split(' ').collect();
    let (true, true, Some(user), Some(realm)) = (
        claims["aud"] == "tessera" && claims["role"] == "USER",
        scopes.contains(&"openid"),
        claims["sub"].as_str(),
        claims["realm"].as_str(),
    ) else {
        return invalid_token("not an OpenID Connect access token").into_response();
    };
    let snap = state.engine.snapshot();
    let now = state.engine.clock().now();
    let realm_name = tessera_core::ids::RealmName(realm.to_string());
    let user = match state.engine.find_user(&snap, &realm_name, user).await {
        Ok(Some(u)) if u.is_active(now) => u,
        Ok(_) => return invalid_token("the user can no longer sign in").into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), Value::String(subject(&user)));
    if scopes.contains(&"profile") {
        out.insert("preferred_username".into(), json!(user.username));
        let name = [user.given_name.as_deref(), user.surname.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            out.insert("name".into(), json!(name));
        }
        if let Some(g) = &user.given_name {
            out.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &user.surname {
            out.insert("family_name".into(), json!(f));
        }
        out.insert("groups".into(), json!(user.groups));
    }
    if scopes.contains(&"email")
        && let Some(m) = &user.email
    {
        out.insert("email".into(), json!(m));
    }
    if scopes.contains(&"phone")
        && let Some(p) = &user.phone
    {
        out.insert("phone_number".into(), json!(p));
    }
    let mut res = axum::Json(Value::Object(out)).into_response();
    no_store(&mut res);
    res
}

async fn discovery(state: St) -> Response {
    let iss = match issuer(&state) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let mut algs = vec!["ES256"];
    if matches!(crate::rsa_key::signer(&state).await, Ok(Some(_))) {
        algs.push("RS256");
    }
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oidc/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "userinfo_endpoint": format!("{iss}/oidc/userinfo"),
        "jwks_uri": format!("{iss}/oauth/jwks"),
        "end_session_endpoint": format!("{iss}/logout"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "claims_supported": ["sub", "preferred_username", "name", "given_name", "family_name",
            "email", "phone_number", "groups", "auth_time", "nonce", "sid"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "ui_locales_supported": ["en", "tr"],
    }))
    .into_response()
}

/// `GET /login/sessions`: the signed-in user's SSO sessions (address, browser, applications,
/// times), each with a button that ends it, and one that ends them all.
async fn sessions_page(state: St, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers, None);
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let Some(mine) = live_session(&state, &key).await else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let sessions = match state.admin.sessions_of(&mine.user, &mine.realm).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "sessions not listed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let this = hash(&key);
    let rows: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "current": s.id == this, "ip": s.session.client_ip,
                "browser": s.session.user_agent, "apps": s.session.apps.join(", "),
                "since": s.session.created_at, "last_seen": s.session.last_seen,
            })
        })
        .collect();
    plain_page(
        "sessions.html",
        minijinja::context! {
            lang => lang, t => texts(&lang), user => mine.user, sessions => rows,
            csrf => logout_token(&key),
        },
    )
}

/// `POST /login/sessions`: ends one of the user's sessions (`end` = its id) or all (`end=all`).
async fn end_sessions(state: St, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers, None);
    let form = query(std::str::from_utf8(&body).ok()).unwrap_or_default();
    let Some(key) = cookie(&state, &headers, SSO_COOKIE) else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let Some(mine) = live_session(&state, &key).await else {
        return fatal(&lang, PageError::SignedOut, StatusCode::OK);
    };
    let want = logout_token(&key);
    if !same_token(form.get("csrf"), &want) {
        return fatal(&lang, PageError::Expired, StatusCode::FORBIDDEN);
    }
    let id = match form.get("end").map(String::as_str) {
        Some("all") => None,
        Some(id) => Some(id),
        None => return fatal(&lang, PageError::Expired, StatusCode::BAD_REQUEST),
    };
    let actor = tessera_core::admin::Actor {
        name: format!("user:{}", mine.user),
        door: "web".into(),
        client_ip: None,
    };
    match state
        .admin
        .end_sso_sessions(&actor, &mine.user, Some(&mine.realm), id)
        .await
    {
        // Their OpenID Connect clients are told by the server's back-channel worker (queued
        // by `end_sso_sessions`: told once, not here as well).
        Ok(_) => redirect("/login/sessions"),
        Err(tessera_core::admin::AdminError::NotFound(_)) => {
            fatal(&lang, PageError::Expired, StatusCode::NOT_FOUND)
        }
        Err(e) => {
            tracing::error!(error = %e, "sessions not ended");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
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
