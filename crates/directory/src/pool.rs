//! Connections to a directory: servers tried in order (a failed one is passed over for a while),
//! TLS as the profile says, a bounded number of operations at once, idle connections kept for
//! reuse. ldap3 has no pool; this is the small layer its documentation asks users to add.

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_core::model::LdapProfile;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

/// How long a server that failed is passed over.
const DOWN_FOR: Duration = Duration::from_secs(30);
/// While every server is passed over, one request tries them again this often; the others
/// fail at once instead of each waiting for the timeout.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// What a connection is bound as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The service account (or anonymous): searches, administrator password resets.
    Service,
    /// Re-bound as each user whose password is checked.
    Auth,
}

/// A failure to talk to the directory (not an answer of it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreachable(pub String);

struct Server {
    url: String,
    down_until: Mutex<Option<Instant>>,
}

impl Server {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .map(|d| d.is_some_and(|t| now < t))
            .unwrap_or(false)
    }

    fn mark(&self, down: bool) {
        if let Ok(mut d) = self.down_until.lock() {
            *d = down.then(|| Instant::now() + DOWN_FOR);
        }
    }
}

pub(crate) struct Pool {
    source: String,
    servers: Vec<Server>,
    settings: LdapConnSettings,
    pub(crate) timeout: Duration,
    bind: Option<(String, Zeroizing<String>)>,
    permits: Arc<Semaphore>,
    idle_service: Mutex<Vec<Ldap>>,
    idle_auth: Mutex<Vec<Ldap>>,
    max_idle: usize,
    /// When every server was last tried while all were down, and what failed then.
    last_probe: Mutex<(Option<Instant>, String)>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("source", &self.source)
            .field(
                "servers",
                &self.servers.iter().map(|s| &s.url).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A connection taken from the pool. It goes back to the idle connections when dropped only
/// after [`Conn::keep`]: an operation that failed, timed out, panicked or was abandoned by a
/// cancelled caller leaves it unusable, and it is closed.
pub(crate) struct Conn<'p> {
    pub(crate) ldap: Ldap,
    pool: &'p Pool,
    role: Role,
    keep: bool,
    /// Taken from the idle connections (it may have died since).
    pub(crate) reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Conn<'_> {
    /// The last operation completed and the connection is bound as its role says.
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }

    /// Do not reuse this connection.
    pub(crate) fn discard(&mut self) {
        self.keep = false;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if !self.keep || self.ldap.is_closed() {
            return;
        }
        let list = match self.role {
            Role::Service => &self.pool.idle_service,
            Role::Auth => &self.pool.idle_auth,
        };
        if let Ok(mut idle) = list.lock()
            && idle.len() < self.pool.max_idle
        {
            idle.push(self.ldap.clone());
        }
    }
}

impl Pool {
    pub(crate) fn new(
        source: &str,
        profile: &LdapProfile,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let timeout = Duration::from_secs(u64::from(profile.timeout_seconds.max(1)));
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(profile.starttls);
        if let Some(config) = tls {
            settings = settings.set_config(config);
        }
        if profile.insecure_skip_verify {
            settings = settings.set_no_tls_verify(true);
        }
        let max = profile.max_connections.max(1) as usize;
        Pool {
            source: source.to_string(),
            servers: profile
                .servers
                .iter()
                .map(|url| Server {
                    url: url.clone(),
                    down_until: Mutex::new(None),
                })
                .collect(),
            settings,
            timeout,
            // A DN without a password would be an unauthenticated bind: LdapSource::new refuses
            // such a profile, and here it is anonymous search at most.
            bind: match (&profile.bind_dn, &profile.bind_password) {
                (Some(dn), Some(pw)) if !pw.expose().is_empty() => {
                    Some((dn.clone(), Zeroizing::new(pw.expose().to_string())))
                }
                _ => None,
            },
            permits: Arc::new(Semaphore::new(max)),
            idle_service: Mutex::new(Vec::new()),
            idle_auth: Mutex::new(Vec::new()),
            max_idle: max,
            last_probe: Mutex::new((None, String::new())),
        }
    }

    /// A connection for `role`: an idle one, or a new one to the first server that answers.
    /// Waits at most the timeout for a free slot.
    pub(crate) async fn get(&self, role: Role) -> Result<Conn<'_>, Unreachable> {
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| {
                Unreachable(format!(
                    "all {} connections are busy (max_connections)",
                    self.max_idle
                ))
            })?
            .map_err(|_| Unreachable("the connection pool is closed".into()))?;
        let list = match role {
            Role::Service => &self.idle_service,
            Role::Auth => &self.idle_auth,
        };
        while let Some(mut ldap) = list.lock().ok().and_then(|mut l| l.pop()) {
            if ldap.is_closed() {
                continue;
            }
            return Ok(Conn {
                ldap,
                pool: self,
                role,
                keep: false,
                reused: true,
                _permit: permit,
            });
        }
        // Failover tries the servers one after another: at most one timeout each, for the
        // connection and the service bind.
        let limit = self.timeout * (2 * self.servers.len() as u32 + 1);
        let ldap = tokio::time::timeout(limit, self.connect(role))
            .await
            .map_err(|_| Unreachable("no server answered in time".into()))??;
        Ok(Conn {
            ldap,
            pool: self,
            role,
            keep: false,
            reused: false,
            _permit: permit,
        })
    }

    /// Drops every idle connection (after a failure that may have hit all of them).
    pub(crate) fn clear_idle(&self) {
        for list in [&self.idle_service, &self.idle_auth] {
            if let Ok(mut l) = list.lock() {
                l.clear();
            }
        }
    }

    /// Connects to the servers in order, skipping those that failed lately unless all did.
    async fn connect(&self, role: Role) -> Result<Ldap, Unreachable> {
        let now = Instant::now();
        let mut order: Vec<&Server> = self.servers.iter().filter(|s| !s.is_down(now)).collect();
        let probing = order.is_empty();
        if probing {
            if let Ok(mut probe) = self.last_probe.lock() {
                if probe.0.is_some_and(|t| now.duration_since(t) < PROBE_EVERY) {
                    return Err(Unreachable(format!(
                        "every server failed within the last {} s ({}); they are tried again every {} s",
                        DOWN_FOR.as_secs(),
                        probe.1,
                        PROBE_EVERY.as_secs()
                    )));
                }
                probe.0 = Some(now);
            }
            order = self.servers.iter().collect();
        }
        let mut errors = Vec::new();
        for server in order {
            match self.open(server, role).await {
                Ok(ldap) => {
                    server.mark(false);
                    return Ok(ldap);
                }
                Err(e) => {
                    tracing::warn!(source = %self.source, server = %server.url, error = %e, "directory server failed");
                    server.mark(true);
                    errors.push(format!("{}: {e}", server.url));
                }
            }
        }
        let error = errors.join("; ");
        if let Ok(mut probe) = self.last_probe.lock() {
            probe.1 = error.clone();
            if !probing && self.servers.iter().all(|s| s.is_down(Instant::now())) {
                probe.0 = Some(Instant::now());
            }
        }
        Err(Unreachable(error))
    }

    /// Opens one connection (TCP, TLS/StartTLS) and binds the service account for `Service`.
    pub(crate) async fn open_to(&self, url: &str) -> Result<Ldap, Unreachable> {
        let (conn, ldap) = LdapConnAsync::with_settings(self.settings.clone(), url)
            .await
            .map_err(|e| Unreachable(describe(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        });
        Ok(ldap)
    }

    async fn open(&self, server: &Server, role: Role) -> Result<Ldap, Unreachable> {
        let mut ldap = self.open_to(&server.url).await?;
        if role == Role::Service {
            self.bind_service(&mut ldap).await?;
        }
        Ok(ldap)
    }

    /// Binds the service account (nothing for anonymous search).
    pub(crate) async fn bind_service(&self, ldap: &mut Ldap) -> Result<(), Unreachable> {
        let Some((dn, pw)) = &self.bind else {
            return Ok(());
        };
        let result = guarded(self.timeout, ldap.simple_bind(dn, pw))
            .await
            .map_err(|e| Unreachable(format!("service bind: {e}")))?;
        if result.rc != 0 {
            return Err(Unreachable(format!(
                "the service account {dn} could not bind: {}",
                rc_text(result.rc, &result.text)
            )));
        }
        Ok(())
    }

    pub(crate) fn has_service_account(&self) -> bool {
        self.bind.is_some()
    }

    pub(crate) fn servers(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|s| s.url.as_str())
    }
}

/// Why a directory operation did not complete.
#[derive(Debug)]
pub(crate) enum OpError {
    Timeout,
    /// The client library panicked on what the server sent.
    Panic,
    Ldap(LdapError),
}

impl OpError {
    /// The connection, not the directory's answer, failed.
    pub(crate) fn is_connection(&self) -> bool {
        match self {
            OpError::Timeout | OpError::Panic => true,
            OpError::Ldap(e) => is_connection_error(e),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Timeout => f.write_str("no answer within the timeout"),
            OpError::Panic => f.write_str("the directory sent an answer that could not be read"),
            OpError::Ldap(e) => f.write_str(&describe(e)),
        }
    }
}

/// Runs one directory operation, bounded as a whole by `timeout` (ldap3's own timeout restarts
/// with every search reply), with a panic of the client library on a malformed answer turned
/// into an error.
pub(crate) async fn guarded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = ldap3::result::Result<T>>,
) -> Result<T, OpError> {
    use futures_util::FutureExt;
    match tokio::time::timeout(timeout, std::panic::AssertUnwindSafe(op).catch_unwind()).await {
        Err(_) => Err(OpError::Timeout),
        Ok(Err(_)) => Err(OpError::Panic),
        Ok(Ok(Err(e))) => Err(OpError::Ldap(e)),
        Ok(Ok(Ok(v))) => Ok(v),
    }
}

/// An ldap3 error in an administrator's words.
pub(crate) fn describe(e: &LdapError) -> String {
    match e {
        LdapError::Timeout { .. } => "no answer within the timeout".into(),
        LdapError::Io { source } => format!("connection failed: {source}"),
        LdapError::LdapResult { result } => rc_text(result.rc, &result.text),
        other => other.to_string(),
    }
}

/// An LDAP result code (RFC 4511 appendix A) with the server's diagnostic text.
pub(crate) fn rc_text(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        8 => "strong authentication required",
        13 => "confidentiality required (use LDAPS or StartTLS)",
        19 => "constraint violation",
        32 => "no such object",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        _ => "error",
    };
    if text.is_empty() {
        format!("{name} (LDAP result {rc})")
    } else {
        format!("{name} (LDAP result {rc}: {text})")
    }
}

/// The error is the connection's, not an answer of the directory.
pub(crate) fn is_connection_error(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. } | LdapError::FilterParsing | LdapError::AddNoValues
    )
}
