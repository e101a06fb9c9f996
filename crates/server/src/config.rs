//! Process configuration: defaults, then a TOML file (`--config`), then `TESSERA_*`
//! environment variables, then command-line flags. Every problem is reported at once, naming
//! where the bad value came from.
//!
//! These settings shape the process (where data lives, what to listen on). The run-time knobs of
//! authentication live in the database as system settings (`tessera settings`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Table, Value};
use zeroize::Zeroizing;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    pub master_key_file: PathBuf,
    /// The master key itself (base64), from `TESSERA_MASTER_KEY`; wins over the file.
    pub master_key: Option<Zeroizing<String>>,
    pub http_listen: SocketAddr,
    /// Connections, connections per client address, and the read deadline (headers, then body)
    /// of the HTTP listener.
    pub http_limits: tessera_http::serve::ConnLimits,
    pub log_level: String,
    pub log_format: LogFormat,
    pub max_connections: u32,
    pub sqlite_readers: u32,
    pub hash_concurrency: usize,
    /// How often a node looks for configuration changed elsewhere (CLI, other nodes).
    pub config_poll_ms: u64,
    /// How often expired transactions and sessions are removed.
    pub purge_interval_secs: u64,
    /// RADIUS authentication and accounting addresses; `None` when RADIUS is off.
    pub radius: Option<(SocketAddr, SocketAddr)>,
    /// RadSec (RADIUS over TLS), when configured.
    pub radsec: Option<tessera_radius::RadsecConfig>,
    /// Where Prometheus reads `/metrics` (no authentication: keep it on loopback or a
    /// management network); `None`: no listener of its own.
    pub metrics_listen: Option<SocketAddr>,
    /// The address was configured (a failure to listen there stops the server); the default
    /// one only warns.
    pub metrics_listen_explicit: bool,
    /// With a token, `/metrics` is also served on the HTTP listener to requests that carry it
    /// (`Authorization: Bearer …`).
    pub metrics_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &tessera_store_redact(&self.database_url))
            .field("master_key_file", &self.master_key_file)
            .field("master_key", &self.master_key.as_ref().map(|_| "***"))
            .field("http_listen", &self.http_listen)
            .finish_non_exhaustive()
    }
}

fn tessera_store_redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// Flags that override everything else.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<String>,
    pub database_url: Option<String>,
    pub http_listen: Option<String>,
    pub radius_listen: Option<String>,
    pub radius_acct_listen: Option<String>,
    pub metrics_listen: Option<String>,
    pub log_format: Option<String>,
}

/// Where a value came from, for error messages.
type Origins = BTreeMap<String, String>;

/// The keys a configuration may have, with their environment variable names.
const KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "database_url_file",
    "master_key_file",
    "http.listen",
    "http.max_connections",
    "http.max_connections_per_address",
    "http.read_timeout_secs",
    "log.level",
    "log.format",
    "database.max_connections",
    "database.sqlite_readers",
    "security.hash_concurrency",
    "cluster.config_poll_ms",
    "maintenance.purge_interval_secs",
    "radius.enabled",
    "radius.listen",
    "radius.acct_listen",
    "radsec.listen",
    "radsec.cert",
    "radsec.key",
    "radsec.client_ca",
    "metrics.listen",
    "metrics.token_file",
];

fn env_name(key: &str) -> String {
    format!("TESSERA_{}", key.replace('.', "_").to_uppercase())
}

/// Environment variables that are not configuration keys but are known.
const OTHER_ENV: &[&str] = &[
    "TESSERA_MASTER_KEY",
    "TESSERA_CONFIG",
    "TESSERA_LOG",
    "TESSERA_METRICS_TOKEN",
];

fn flatten(prefix: &str, table: &Table, out: &mut BTreeMap<String, Value>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => flatten(&key, t, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

impl Config {
    /// Loads the configuration from all layers.
    pub fn load(overrides: &Overrides) -> Result<Config, Vec<String>> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(overrides, &env)
    }

    pub fn load_from(
        overrides: &Overrides,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        let mut origins: Origins = BTreeMap::new();

        let file = overrides
            .config_file
            .clone()
            .or_else(|| env.get("TESSERA_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<Table>() {
                    Ok(table) => {
                        let mut flat = BTreeMap::new();
                        flatten("", &table, &mut flat);
                        for (k, v) in flat {
                            origins.insert(k.clone(), format!("{}", path.display()));
                            values.insert(k, v);
                        }
                    }
                    Err(e) => errors.push(format!("{}: not valid TOML: {e}", path.display())),
                },
                Err(e) => errors.push(format!("cannot read config file {}: {e}", path.display())),
            }
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("TESSERA_") else {
                continue;
            };
            if OTHER_ENV.contains(&name.as_str()) || rest.starts_with("TEST_") {
                continue;
            }
            match KEYS.iter().find(|k| env_name(k) == *name) {
                Some(key) => {
                    values.insert(key.to_string(), Value::String(value.clone()));
                    origins.insert(key.to_string(), format!("environment variable {name}"));
                }
                None => errors.push(format!(
                    "environment variable {name} is not a Tessera setting (known: {})",
                    KEYS.iter()
                        .map(|k| env_name(k))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        let flags = [
            ("data_dir", &overrides.data_dir, "--data-dir"),
            ("database_url", &overrides.database_url, "--database-url"),
            ("http.listen", &overrides.http_listen, "--http-listen"),
            ("radius.listen", &overrides.radius_listen, "--radius-listen"),
            (
                "radius.acct_listen",
                &overrides.radius_acct_listen,
                "--radius-acct-listen",
            ),
            (
                "metrics.listen",
                &overrides.metrics_listen,
                "--metrics-listen",
            ),
            ("log.format", &overrides.log_format, "--log-format"),
        ];
        for (key, value, flag) in flags {
            if let Some(v) = value {
                values.insert(key.into(), Value::String(v.clone()));
                origins.insert(key.into(), format!("flag {flag}"));
            }
        }
        for key in values.keys() {
            if !KEYS.contains(&key.as_str()) {
                errors.push(format!(
                    "{}: unknown setting '{key}'",
                    origins.get(key).map(String::as_str).unwrap_or("config")
                ));
            }
        }

        let mut r = Reader {
            values: &values,
            origins: &origins,
            errors: &mut errors,
        };
        let data_dir = PathBuf::from(r.string("data_dir").unwrap_or_else(|| "./data".into()));
        let url_file = r.string("database_url_file");
        let mut database_url = r.string("database_url");
        if let Some(path) = url_file {
            match std::fs::read_to_string(&path) {
                Ok(text) => database_url = Some(text.trim().to_string()),
                Err(e) => r
                    .errors
                    .push(format!("database_url_file: cannot read {path}: {e}")),
            }
        }
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tessera.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            r.errors.push(format!(
                "database_url ({}): must start with sqlite:// or postgres://",
                origins
                    .get("database_url")
                    .map(String::as_str)
                    .unwrap_or("default")
            ));
        }
        let master_key_file = r
            .string("master_key_file")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("master.key"));
        let http_listen = r
            .parsed::<SocketAddr>("http.listen", "an address such as 127.0.0.1:8080")
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let http_limits = tessera_http::serve::ConnLimits {
            max_connections: r
                .int("http.max_connections", 16, 1_000_000)
                .map_or(4096, |n| n as usize),
            max_per_address: r
                .int("http.max_connections_per_address", 1, 1_000_000)
                .map_or(256, |n| n as usize),
            read_timeout: std::time::Duration::from_secs(u64::from(
                r.int("http.read_timeout_secs", 1, 3600).unwrap_or(10),
            )),
        };
        let log_level = r.string("log.level").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            let msg = format!(
                "log.level ({}): '{log_level}' is not a level (error, warn, info, debug, trace) or filter",
                r.origin("log.level")
            );
            r.errors.push(msg);
        }
        let log_format = match r.string("log.format").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                let msg = format!(
                    "log.format ({}): '{other}' must be text or json",
                    r.origin("log.format")
                );
                r.errors.push(msg);
                LogFormat::Text
            }
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let max_connections = r.int("database.max_connections", 1, 1000).unwrap_or(16);
        let sqlite_readers = r.int("database.sqlite_readers", 1, 64).unwrap_or(4);
        let hash_concurrency = r
            .int("security.hash_concurrency", 1, 256)
            .map(|n| n as usize)
            .unwrap_or(cores);
        let config_poll_ms = u64::from(
            r.int("cluster.config_poll_ms", 100, 600_000)
                .unwrap_or(1000),
        );
        let purge_interval_secs = u64::from(
            r.int("maintenance.purge_interval_secs", 10, 86_400)
                .unwrap_or(300),
        );
        let radius_enabled = r.boolean("radius.enabled").unwrap_or(true);
        let radius_auth = r
            .parsed::<SocketAddr>("radius.listen", "an address such as 127.0.0.1:1812")
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1812)));
        let radius_acct = r
            .parsed::<SocketAddr>("radius.acct_listen", "an address such as 127.0.0.1:1813")
            .unwrap_or_else(|| {
                // The next port, or a free one when the OS picks the authentication port.
                let port = match radius_auth.port() {
                    0 => 0,
                    p => p.saturating_add(1),
                };
                SocketAddr::new(radius_auth.ip(), port)
            });
        let radius = radius_enabled.then_some((radius_auth, radius_acct));
        let radsec_keys = [
            "radsec.listen",
            "radsec.cert",
            "radsec.key",
            "radsec.client_ca",
        ];
        let radsec = if radsec_keys.iter().any(|k| values.contains_key(*k)) {
            let listen = r
                .parsed::<SocketAddr>("radsec.listen", "an address such as 0.0.0.0:2083")
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 2083)));
            let mut path = |key: &str| {
                let p = r.string(key).map(PathBuf::from);
                if p.is_none() {
                    r.errors.push(format!(
                        "{key}: RadSec needs radsec.cert, radsec.key and radsec.client_ca (PEM files)"
                    ));
                }
                p
            };
            match (
                path("radsec.cert"),
                path("radsec.key"),
                path("radsec.client_ca"),
            ) {
                (Some(cert), Some(key), Some(client_ca)) => Some(tessera_radius::RadsecConfig {
                    listen,
                    cert,
                    key,
                    client_ca,
                }),
                _ => None,
            }
        } else {
            None
        };
        let metrics_listen_explicit = values.contains_key("metrics.listen");
        let metrics_listen = match r.string("metrics.listen").as_deref() {
            Some("off") => None,
            _ => Some(
                r.parsed::<SocketAddr>(
                    "metrics.listen",
                    "an address such as 127.0.0.1:9464, or off",
                )
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
            ),
        };
        // The token itself (TESSERA_METRICS_TOKEN) wins over a file naming it, as the master
        // key does; an empty variable is none.
        let mut metrics_token = None;
        if let Some(path) = r.string("metrics.token_file") {
            match std::fs::read_to_string(&path) {
                Ok(text) => metrics_token = Some(Zeroizing::new(text.trim().to_string())),
                Err(e) => r
                    .errors
                    .push(format!("metrics.token_file: cannot read {path}: {e}")),
            }
        }
        if let Some(t) = env
            .get("TESSERA_METRICS_TOKEN")
            .filter(|t| !t.trim().is_empty())
        {
            metrics_token = Some(Zeroizing::new(t.trim().to_string()));
        }
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
            r.errors.push(
                "the metrics token (TESSERA_METRICS_TOKEN or metrics.token_file) must be at least 16 characters"
                    .into(),
            );
        }
        let master_key = env
            .get("TESSERA_MASTER_KEY")
            .filter(|k| !k.trim().is_empty())
            .map(|k| Zeroizing::new(k.clone()));
        if errors.is_empty() {
            Ok(Config {
                data_dir,
                database_url,
                master_key_file,
                master_key,
                http_listen,
                http_limits,
                log_level,
                log_format,
                max_connections,
                sqlite_readers,
                hash_concurrency,
                config_poll_ms,
                purge_interval_secs,
                radius,
                radsec,
                metrics_listen,
                metrics_listen_explicit,
                metrics_token,
            })
        } else {
            Err(errors)
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn redacted_database_url(&self) -> String {
        tessera_store_redact(&self.database_url)
    }
}

struct Reader<'a> {
    values: &'a BTreeMap<String, Value>,
    origins: &'a Origins,
    errors: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn origin(&self, key: &str) -> &str {
        self.origins
            .get(key)
            .map(String::as_str)
            .unwrap_or("config")
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let msg = format!(
                    "{key} ({}): expected a string, found {}",
                    self.origin(key),
                    other.type_str()
                );
                self.errors.push(msg);
                None
            }
        }
    }

    fn parsed<T: std::str::FromStr>(&mut self, key: &str, expected: &str) -> Option<T> {
        let s = self.string(key)?;
        match s.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                let msg = format!("{key} ({}): '{s}' is not {expected}", self.origin(key));
                self.errors.push(msg);
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.values.get(key)? {
            Value::Boolean(b) => Some(*b),
            Value::String(s) if matches!(s.as_str(), "true" | "yes" | "on" | "1") => Some(true),
            Value::String(s) if matches!(s.as_str(), "false" | "no" | "off" | "0") => Some(false),
            other => {
                let msg = format!(
                    "{key} ({}): expected true or false, found {other}",
                    self.origin(key)
                );
                self.errors.push(msg);
                None
            }
        }
    }

    fn int(&mut self, key: &str, min: u32, max: u32) -> Option<u32> {
        let raw = self.values.get(key)?;
        let n = match raw {
            Value::Integer(i) => Some(*i),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (min..=max).contains(n))
        {
            Some(n) => Some(n),
            None => {
                let msg = format!(
                    "{key} ({}): expected a whole number from {min} to {max}",
                    self.origin(key)
                );
                self.errors.push(msg);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::load_from(&Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url, "sqlite://./data/tessera.db");
        assert_eq!(c.master_key_file, PathBuf::from("./data/master.key"));
        assert_eq!(c.http_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/a\"\n[http]\nlisten = \"0.0.0.0:9000\"\n[log]\nlevel = \"debug\"\n",
        )
        .unwrap();
        let o = Overrides {
            config_file: Some(file),
            http_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let c = Config::load_from(
            &o,
            &env(&[("TESSERA_DATA_DIR", "/srv/b"), ("TESSERA_TEST_PG_URL", "x")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/b"));
        assert_eq!(c.http_listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn every_problem_is_reported_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(
            &file,
            "colour = \"blue\"\n[http]\nlisten = \"nowhere\"\n[database]\nmax_connections = 0\n",
        )
        .unwrap();
        let o = Overrides {
            config_file: Some(file),
            ..Overrides::default()
        };
        let errs = Config::load_from(
            &o,
            &env(&[
                ("TESSERA_LOG_FORMAT", "xml"),
                ("TESSERA_HTTP_LISTN", "x"),
                ("TESSERA_DATABASE_URL", "mysql://x"),
            ]),
        )
        .unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("unknown setting 'colour'"), "{all}");
        assert!(
            all.contains("http.listen") && all.contains("'nowhere'"),
            "{all}"
        );
        assert!(all.contains("database.max_connections"), "{all}");
        assert!(
            all.contains("log.format") && all.contains("TESSERA_LOG_FORMAT"),
            "{all}"
        );
        assert!(
            all.contains("TESSERA_HTTP_LISTN is not a Tessera setting"),
            "{all}"
        );
        assert!(all.contains("database_url"), "{all}");
        assert_eq!(errs.len(), 6, "{all}");
    }

    #[test]
    fn radius_addresses_default_and_radsec_needs_its_files() {
        let c = Config::load_from(&Overrides::default(), &env(&[])).unwrap();
        assert_eq!(
            c.radius,
            Some((
                "127.0.0.1:1812".parse().unwrap(),
                "127.0.0.1:1813".parse().unwrap()
            ))
        );
        assert!(c.radsec.is_none());
        let o = Overrides {
            radius_listen: Some("0.0.0.0:11812".into()),
            ..Overrides::default()
        };
        let c = Config::load_from(&o, &env(&[])).unwrap();
        assert_eq!(c.radius.unwrap().1, "0.0.0.0:11813".parse().unwrap());
        let c = Config::load_from(
            &Overrides::default(),
            &env(&[("TESSERA_RADIUS_ENABLED", "false")]),
        )
        .unwrap();
        assert!(c.radius.is_none());
        let errs = Config::load_from(
            &Overrides::default(),
            &env(&[
                ("TESSERA_RADSEC_CERT", "/x.pem"),
                ("TESSERA_RADIUS_ENABLED", "maybe"),
            ]),
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("radsec.key")), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.contains("radius.enabled")),
            "{errs:?}"
        );
    }

    #[test]
    fn metrics_listener_and_token() {
        let c = Config::load_from(&Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(!c.metrics_listen_explicit && c.metrics_token.is_none());
        let c = Config::load_from(
            &Overrides::default(),
            &env(&[
                ("TESSERA_METRICS_LISTEN", "off"),
                ("TESSERA_METRICS_TOKEN", "sixteen-chars-ok"),
            ]),
        )
        .unwrap();
        assert_eq!(c.metrics_listen, None);
        assert_eq!(
            c.metrics_token.as_deref().map(|t| t.as_str()),
            Some("sixteen-chars-ok")
        );
        let errs = Config::load_from(
            &Overrides::default(),
            &env(&[
                ("TESSERA_METRICS_LISTEN", "everywhere"),
                ("TESSERA_METRICS_TOKEN", "short"),
            ]),
        )
        .err()
        .unwrap();
        assert!(
            errs.iter().any(|e| e.contains("metrics.listen")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("16 characters")), "{errs:?}");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tessera.toml");
        let o = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        Config::load_from(&o, &env(&[])).unwrap();
    }
}
