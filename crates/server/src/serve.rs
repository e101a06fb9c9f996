//! `tessera serve`: the HTTP front door plus the background upkeep, with graceful shutdown.

use crate::app::{self, App};
use crate::config::Config;
use anyhow::{Context, Result};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tessera_core::clock::Clock;
use tessera_core::store::MetaStore;
use tessera_http::{HttpState, MetricsRender};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The process-wide Prometheus recorder (the `metrics` facade has one global recorder).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics are disabled"))
                .ok()
        })
        .clone()
}

/// A server running in this process.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
    /// RADIUS authentication, accounting and RadSec addresses, when they listen.
    pub radius_auth_addr: Option<SocketAddr>,
    pub radius_acct_addr: Option<SocketAddr>,
    pub radsec_addr: Option<SocketAddr>,
    /// The metrics listener's address, when it listens.
    pub metrics_addr: Option<SocketAddr>,
    pub app: App,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, stops the background tasks.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.http
            .await
            .context("the HTTP server task failed")?
            .context("the HTTP server failed")?;
        self.app.store.close().await;
        Ok(())
    }

    /// Waits until the HTTP server ends (after `stop_on` resolves).
    pub async fn run_until(self, stop_on: impl std::future::Future<Output = ()>) -> Result<()> {
        stop_on.await;
        tracing::info!("shutting down: finishing requests in flight");
        self.shutdown().await
    }
}

/// Opens the data and starts serving.
pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> Result<Running> {
    let app = app::open(config, clock).await?;
    start_with(config, app).await
}

pub async fn start_with(config: &Config, app: App) -> Result<Running> {
    // One TLS provider for every client (HTTP gateways, SMTP, LDAP): ring. Installing it twice
    // (a second server in the same process) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let handle = metrics_handle();
    let render: Option<MetricsRender> = handle.clone().map(|h| {
        let f: MetricsRender = Arc::new(move || h.render());
        f
    });
    let state = HttpState::new(app.admin.clone(), render.clone())
        .with_metrics_token(config.metrics_token.clone())
        .with_read_timeout(config.http_limits.read_timeout);
    let state_for_tasks = state.clone();
    let router = tessera_http::router(state);
    let listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let http_addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let (mut radius_auth_addr, mut radius_acct_addr, mut radsec_addr) = (None, None, None);
    if config.radius.is_some() || config.radsec.is_some() {
        let (auth, acct) = config.radius.unwrap_or((
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ));
        let listen = tessera_radius::RadiusListen {
            auth,
            acct,
            radsec: config.radsec.clone(),
        };
        let radius = tessera_radius::RadiusServer::bind(app.engine.clone(), &listen)
            .await
            .context(
                "cannot start the RADIUS server (set radius.enabled = false to run without it)",
            )?;
        if config.radius.is_some() {
            radius_auth_addr = radius.auth_addr();
            radius_acct_addr = radius.acct_addr();
        }
        radsec_addr = radius.radsec_addr();
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        tracing::info!(
            auth = %show(radius_auth_addr),
            acct = %show(radius_acct_addr),
            radsec = %show(radsec_addr),
            "RADIUS is listening"
        );
        tasks.extend(radius.spawn(stop_rx.clone()));
    }

    // Prometheus's own listener (loopback by default): /metrics without authentication.
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_listen {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                metrics_addr = Some(listener.local_addr()?);
                let router = tessera_http::metrics_router(render.clone());
                let mut rx = stop_rx.clone();
                let limits = config.http_limits;
                tasks.push(tokio::spawn(async move {
                    let served = tessera_http::serve::serve(listener, router, limits, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                }));
            }
            Err(e) if !config.metrics_listen_explicit => tracing::warn!(
                address = %addr,
                error = %e,
                "metrics are not served: the default metrics address is taken (set metrics.listen, or off)"
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot listen for metrics on {addr}"));
            }
        }
    }

    let mut rx = stop_rx.clone();
    let limits = config.http_limits;
    let http = tokio::spawn(async move {
        tessera_http::serve::serve(listener, router, limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });

    // Configuration changed through the CLI or on another node takes effect here.
    let engine = app.engine.clone();
    let poll = Duration::from_millis(config.config_poll_ms);
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = rx.wait_for(|s| *s) => break,
            }
            match engine.refresh().await {
                Ok(true) => tracing::info!("configuration reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check for configuration changes"),
            }
        }
    }));
    // Audit records this node writes go to the syslog profiles, without ever waiting for them.
    let (queue, records) = tessera_notify::syslog::queue();
    app.store
        .set_audit_tap(tessera_store::AuditTap(Arc::new(move |r| queue.push(r))));
    let engine = app.engine.clone();
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        tessera_notify::syslog::run_forwarder(engine, records, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await;
    }));
    // Messages queued for delivery (codes, links) are sent, here or by any other node.
    let engine = app.engine.clone();
    let outbox: Arc<dyn tessera_core::store::OutboxStore> = app.store.clone();
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        tessera_notify::run_worker(engine, outbox, Duration::from_millis(500), async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await;
    }));
    // Relying parties of SSO sessions ended by the CLI or the admin API are told
    // (back-channel logout), by this node or another.
    let http_state = state_for_tasks.clone();
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = rx.wait_for(|s| *s) => break,
            }
            tessera_http::backchannel::send_due(&http_state).await;
        }
    }));
    // SAML service providers registered by metadata address are read again now and then.
    let admin = app.admin.clone();
    let meta: Arc<dyn MetaStore> = app.store.clone();
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        let mut last = std::collections::HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = rx.wait_for(|s| *s) => break,
            }
            crate::cli::saml_cmds::refresh_due(&admin, meta.as_ref(), &mut last).await;
        }
    }));
    // Expired challenges and sessions go; metrics histograms are maintained.
    let store = app.store.clone();
    let clock = app.engine.clock().clone();
    let purge = Duration::from_secs(config.purge_interval_secs);
    let mut rx = stop_rx;
    tasks.push(tokio::spawn(async move {
        let mut last_purge = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = rx.wait_for(|s| *s) => break,
            }
            if let Some(h) = &handle {
                h.run_upkeep();
            }
            if last_purge.elapsed() >= purge {
                last_purge = tokio::time::Instant::now();
                match store.purge_expired(clock.now()).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "expired state removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot remove expired state"),
                }
            }
        }
    }));

    Ok(Running {
        http_addr,
        radius_auth_addr,
        radius_acct_addr,
        radsec_addr,
        metrics_addr,
        app,
        stop,
        tasks,
        http,
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// With the `public_url` setting empty and the HTTP listener on loopback, the listener's address
/// serves as the public URL (only this machine reaches it, so browsers use that address): the
/// OpenID Connect provider, SAML and mail links work for a first try without any setting.
pub fn default_public_url(running: &Running) {
    if running.http_addr.ip().is_loopback() {
        running
            .app
            .engine
            .use_default_public_url(format!("http://{}", running.http_addr));
    }
}

/// How to run this program from where the user is: `tessera` when that is what the PATH finds,
/// else the path of this executable (relative to the working directory when inside it).
pub fn own_command() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return "tessera".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join("tessera")
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return "tessera".into();
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| cwd.canonicalize().ok())
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| exe.clone());
    let text = shown.display().to_string();
    if text.contains(|c: char| !(c.is_ascii_alphanumeric() || "/._-+".contains(c))) {
        format!("'{}'", text.replace('\'', r"'\''"))
    } else {
        text
    }
}

/// Prints what an operator needs after start: where things are and what to do first. With
/// the log in JSON lines, the same is logged as events (nothing else is written to standard
/// error, so that a log shipper reads only JSON).
pub async fn print_banner(config: &Config, running: &Running) -> Result<()> {
    let app = &running.app;
    let addr = running.http_addr;
    let me = own_command();
    let json = config.log_format == crate::config::LogFormat::Json;
    tracing::info!(http = %addr, database = %config.redacted_database_url(), backend = app.store.backend(), "tessera is serving");
    // What to do next, most urgent first.
    let mut advice = Vec::new();
    if app.key_created {
        advice.push(format!(
            "Created the master key {} (mode 0600). Back it up apart from the database: without it the OTP seeds cannot be read.",
            config.master_key_file.display()
        ));
    }
    if app.engine.snapshot().settings.public_url.is_empty() {
        advice.push(match app.engine.public_url() {
            Some(url) => format!(
                "The public_url setting is empty: OpenID Connect, SAML and links by mail use {url}, which only this machine reaches. For other machines or behind a reverse proxy, set it: {me} settings set public_url=https://sso.example.org"
            ),
            None => format!(
                "OpenID Connect, SAML and links by mail are off until the public_url setting names the address users reach this server at: {me} settings set public_url=https://sso.example.org"
            ),
        });
    }
    if app.admin.list_admins().await?.is_empty() {
        let mut flags = String::new();
        if config.data_dir != std::path::Path::new("./data") {
            flags.push_str(&format!(" --data-dir {}", config.data_dir.display()));
        }
        if !config.is_sqlite() {
            flags.push_str(" --database-url '<the same URL>'");
        }
        advice.push(format!(
            "No administrator exists yet. Create the first one (in another terminal):\n  {me}{flags} admin create admin\nthen sign in: curl -d username=admin -d password=… http://{addr}/auth"
        ));
    }
    if json {
        tracing::info!(
            validate = %format!("http://{addr}/validate/check"),
            admin_api = %format!("http://{addr}/api/v1"),
            pages = %format!("http://{addr}/"),
            metrics = %running.metrics_addr.map(|m| format!("http://{m}/metrics")).unwrap_or_else(|| "off".into()),
            radius = %running.radius_auth_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            radsec = %running.radsec_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
            "addresses"
        );
        for a in &advice {
            tracing::warn!("{}", a.replace('\n', " "));
        }
        return Ok(());
    }
    eprintln!(
        "Tessera {} is listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!("  privacyIDEA-compatible validate API: http://{addr}/validate/check");
    eprintln!(
        "  admin REST API:                     http://{addr}/api/v1 (OpenAPI: /api/v1/openapi.json)"
    );
    eprintln!("  sign-in pages:                      http://{addr}/ (users' own account: /login)");
    eprintln!("  health:                             http://{addr}/healthz, /readyz");
    match running.metrics_addr {
        Some(m) => eprintln!("  metrics (Prometheus):               http://{m}/metrics"),
        None => eprintln!("  metrics (Prometheus):               off"),
    }
    match (running.radius_auth_addr, running.radius_acct_addr) {
        (Some(auth), Some(acct)) => eprintln!(
            "  RADIUS:                             {auth}/udp (accounting {acct}/udp); add NAS clients with `{me} client add radius`"
        ),
        _ => eprintln!("  RADIUS:                             off"),
    }
    if let Some(radsec) = running.radsec_addr {
        eprintln!("  RadSec (RADIUS over TLS):           {radsec}/tcp");
    }
    for a in &advice {
        eprintln!();
        eprintln!("{a}");
    }
    Ok(())
}
