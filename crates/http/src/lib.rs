//! Tessera's HTTP front doors: the privacyIDEA/eduMFA-compatible validate API (`/validate/*`,
//! `/auth`), OAuth2 for API clients, the OpenID Connect provider and the login, session and link
//! pages, the SAML 2.0 identity provider, the admin REST API under `/api/v1` with its OpenAPI
//! document, and `/healthz`, `/readyz`, `/metrics`.
//!
//! Handlers turn HTTP into calls on the engine (or the admin service) and map the result back in
//! one place each. No handler holds the store: what a cookie, a code or a refresh token stands
//! for is kept by `Engine::sso()`, signing keys by `Engine::keys()`. May depend on:
//! `tessera-core`, `tessera-otp`.

mod admin_api;
pub mod backchannel;
mod health;
mod limits;
mod links;
mod oauth;
mod params;
pub mod payload;
mod pi;
mod response_sign;
pub mod rsa_key;
pub mod saml;
pub mod saml_keys;
pub mod serve;
mod validate;
mod web;

pub use admin_api::ROUTES as ADMIN_ROUTES;
pub use health::metrics_router;
pub use params::Params;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tessera_core::admin::Admin;
use tessera_core::engine::Engine;
use tessera_core::rng::random_hex;

/// Renders the Prometheus exposition text (provided by the binary, which owns the recorder).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// What the handlers share: one `Arc`, since every request clones it several times (the
/// extractors and each middleware), from every worker thread at once — a clone per field made
/// those reference counts a contended hot spot.
#[derive(Clone)]
pub struct HttpState {
    shared: Arc<Shared>,
}

impl std::ops::Deref for HttpState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// The state behind [`HttpState`].
#[derive(Clone)]
pub struct Shared {
    pub engine: Arc<Engine>,
    pub admin: Admin,
    pub metrics: Option<MetricsRender>,
    /// The token that opens `/metrics` on this listener (none: it is closed here).
    metrics_token: Option<Arc<zeroize::Zeroizing<String>>>,
    oauth_signer: Arc<tokio::sync::OnceCell<Arc<oauth::Signer>>>,
    /// Per-node token request counts per API client.
    oauth_rates: Arc<limits::MinuteCounts<String>>,
    /// Per-node request counts per address: of the web sign-in pages, of the checking doors.
    web_rates: Arc<limits::MinuteCounts<IpAddr>>,
    api_rates: Arc<limits::MinuteCounts<IpAddr>>,
    /// How long a request body may take to arrive.
    read_timeout: std::time::Duration,
    /// The imported RS256 key: the stored (sealed) value it was read from, and the signer.
    rsa_signer: Arc<rsa_key::Cache>,
    /// The SAML IdP's signing keys, by the sealed value they were read from.
    saml_keys: Arc<saml_keys::Cache>,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl HttpState {
    pub fn new(admin: Admin, metrics: Option<MetricsRender>) -> Self {
        HttpState {
            shared: Arc::new(Shared {
                engine: admin.engine().clone(),
                admin,
                metrics,
                metrics_token: None,
                oauth_signer: Default::default(),
                oauth_rates: Default::default(),
                web_rates: Default::default(),
                api_rates: Default::default(),
                read_timeout: serve::ConnLimits::default().read_timeout,
                rsa_signer: Default::default(),
                saml_keys: Default::default(),
            }),
        }
    }

    /// Changes the state before it is shared.
    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|s| (*s).clone());
        change(&mut shared);
        HttpState {
            shared: Arc::new(shared),
        }
    }

    /// Request bodies must arrive within `timeout`.
    pub fn with_read_timeout(self, timeout: std::time::Duration) -> Self {
        self.with(|s| s.read_timeout = timeout)
    }

    /// Opens `/metrics` on the HTTP listener to requests carrying `token`.
    pub fn with_metrics_token(self, token: Option<zeroize::Zeroizing<String>>) -> Self {
        self.with(|s| s.metrics_token = token.map(Arc::new))
    }
}

impl Shared {
    /// A random id under which an internal fault is logged; the client sees only the id.
    pub(crate) fn error_id(&self) -> String {
        random_hex(self.engine.rng(), 6)
    }

    /// The client of a request: the peer, or whom a trusted proxy names (X-Forwarded-For, the
    /// `client` parameter) per the `override_client` setting.
    pub(crate) fn client_ip(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        claimed: Option<&str>,
    ) -> IpAddr {
        // Every entry of every X-Forwarded-For header, read from the nearest hop outwards and
        // only up to the first that is no address: what a client wrote in front of it (junk
        // included) cannot hide the addresses the proxies appended.
        let mut entries: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            match value.to_str() {
                Ok(text) => entries.extend(text.split(',')),
                Err(_) => entries.push(""),
            }
        }
        let mut forwarded: Vec<IpAddr> = Vec::new();
        for part in entries.iter().rev() {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => forwarded.push(ip.to_canonical()),
                Err(_) => break,
            }
        }
        let claimed = claimed.and_then(|c| c.trim().parse::<IpAddr>().ok());
        self.engine
            .resolve_client_ip(peer.ip().to_canonical(), &forwarded, claimed)
    }
}

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Largest token file `POST /api/v1/tokens/import` accepts (a PSKC file of some thousand
/// tokens).
pub const MAX_IMPORT_BODY: usize = 8 * 1024 * 1024;

/// All routes.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .merge(validate::routes().layer(middleware::from_fn_with_state(
            state.clone(),
            response_sign::sign_responses,
        )))
        .nest("/api/v1", admin_api::routes())
        .merge(health::routes())
        .merge(links::routes())
        .merge(oauth::routes())
        .merge(
            web::routes()
                .merge(saml::routes())
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    web::rate_limit,
                )),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            payload::open_payloads,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::per_address,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::body_deadline,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // Pages that need another policy (the login page's stylesheet) set their own.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    res
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("tessera_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// Exposes `State` for the modules without repeating the type.
pub(crate) type St = State<HttpState>;
