//! The pages' words (English and Turkish), templates, branding, and the pages that end a sign-in.

use super::*;
use crate::{HttpState, St};
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

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
pub(super) fn words(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect(),
    )
}

pub(super) struct Page<'a> {
    /// More hidden fields of the form (name, value).
    pub(super) hidden: Vec<(&'static str, String)>,
    pub(super) lang: &'a str,
    pub(super) app_title: &'a str,
    pub(super) brand: Option<&'a Brand>,
    pub(super) step: &'a str,
    pub(super) csrf: &'a str,
    pub(super) error: Option<&'a str>,
    pub(super) username: &'a str,
    /// The key of the page texts naming what the first page asks for beside the user name
    /// (see [`first_answer`]); none: only the user name.
    pub(super) ask_password: Option<&'static str>,
    /// The token PIN goes before the code (the `prepend_pin` setting).
    pub(super) pin_first: bool,
    pub(super) prompt: &'a str,
    pub(super) answer_type: &'a str,
    pub(super) done: bool,
    pub(super) fatal: bool,
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
                ("login.html", include_str!("../../templates/login.html")),
                (
                    "sessions.html",
                    include_str!("../../templates/sessions.html"),
                ),
                ("home.html", include_str!("../../templates/home.html")),
                (
                    "saml_post.html",
                    include_str!("../../templates/saml_post.html"),
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

pub(super) fn render(page: Page<'_>, status: StatusCode) -> Response {
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
    pub(super) const ALL: [PageError; 10] = [
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

pub(super) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../templates/login.css"),
    )
        .into_response()
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
    pub(super) intro: Option<String>,
    pub(super) help: Option<String>,
    pub(super) logo_url: Option<String>,
    pub(super) css_url: Option<String>,
    /// Page texts the branding rewords.
    pub(super) words: serde_json::Map<String, Value>,
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

pub(super) fn branding_of(state: &HttpState, app: &str) -> Option<tessera_core::model::Branding> {
    state
        .engine
        .snapshot()
        .application(&tessera_core::ids::AppName(app.to_string()))
        .and_then(|a| a.branding.clone())
}

/// `/login/brand/{app}/logo`: the application's logo (an SVG cannot run anything: no script
/// may run in it, and it is sandboxed).
pub(super) async fn brand_logo(state: St, Path(app): Path<String>) -> Response {
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
pub(super) async fn brand_style(state: St, Path(app): Path<String>) -> Response {
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

/// `/`: what this server is, and where a user goes from here (nothing about its
/// configuration).
pub(super) async fn home(state: St, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers, None);
    home_page(&state, &lang)
}

pub(super) fn home_page(state: &HttpState, lang: &str) -> Response {
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
pub(super) fn plain_page(name: &str, context: minijinja::Value) -> Response {
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
