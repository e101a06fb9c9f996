//! Connecting, migrating and checking the master key.

use crate::SqlStore;
use crate::db::{Db, Sqlite, params};
use crate::seal::{MasterKey, SealError, Sealer};
use sqlx::postgres::PgPoolOptions;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Connection counts.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// PostgreSQL connections per node.
    pub max_connections: u32,
    /// SQLite reader connections (writes always use one connection).
    pub sqlite_readers: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            sqlite_readers: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "unsupported database_url '{0}': use sqlite://PATH (embedded) or postgres://USER@HOST/DB"
    )]
    BadUrl(String),
    #[error("cannot open the database {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("cannot migrate the database schema: {0}")]
    Migrate(String),
    #[error(
        "the master key (id {given}) does not match this database, whose secrets were sealed with key id {expected}. \
         Start with the original key file (or TESSERA_MASTER_KEY), or point --data-dir/--database-url at the data that belongs to this key."
    )]
    KeyMismatch { given: String, expected: String },
    #[error(
        "the master key (id {given}) cannot open this database's key check: the key or the data is damaged. \
         Restore the original key file or the database from backup."
    )]
    KeyCheckFailed { given: String },
    #[error("database error while checking the master key: {0}")]
    Backend(String),
}

const KEY_CHECK_CONTEXT: &str = "meta:key-check";
const KEY_CHECK_TEXT: &[u8] = b"tessera master key check";

fn migrations(backend: Backend) -> Vec<(i64, &'static str, &'static str)> {
    match backend {
        Backend::Sqlite => vec![
            (
                1,
                "initial",
                include_str!("../migrations/sqlite/0001_initial.sql"),
            ),
            (
                2,
                "outbox",
                include_str!("../migrations/sqlite/0002_outbox.sql"),
            ),
            (
                3,
                "oauth",
                include_str!("../migrations/sqlite/0003_oauth.sql"),
            ),
            (
                4,
                "refresh",
                include_str!("../migrations/sqlite/0004_refresh.sql"),
            ),
            (
                5,
                "mfa_password",
                include_str!("../migrations/sqlite/0005_mfa_password.sql"),
            ),
            (
                6,
                "web_state",
                include_str!("../migrations/sqlite/0006_web_state.sql"),
            ),
            (
                7,
                "lock_keys",
                include_str!("../migrations/sqlite/0007_lock_keys.sql"),
            ),
            (
                8,
                "tx_origin",
                include_str!("../migrations/sqlite/0008_tx_origin.sql"),
            ),
        ],
        Backend::Postgres => vec![
            (
                1,
                "initial",
                include_str!("../migrations/postgres/0001_initial.sql"),
            ),
            (
                2,
                "outbox",
                include_str!("../migrations/postgres/0002_outbox.sql"),
            ),
            (
                3,
                "oauth",
                include_str!("../migrations/postgres/0003_oauth.sql"),
            ),
            (
                4,
                "refresh",
                include_str!("../migrations/postgres/0004_refresh.sql"),
            ),
            (
                5,
                "mfa_password",
                include_str!("../migrations/postgres/0005_mfa_password.sql"),
            ),
            (
                6,
                "web_state",
                include_str!("../migrations/postgres/0006_web_state.sql"),
            ),
            (
                7,
                "lock_keys",
                include_str!("../migrations/postgres/0007_lock_keys.sql"),
            ),
            (
                8,
                "tx_origin",
                include_str!("../migrations/postgres/0008_tx_origin.sql"),
            ),
        ],
    }
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// The file path of a `sqlite://PATH` or `sqlite:PATH` URL.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then(|| path.to_string())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqlStore {
    /// Connects, applies pending migrations and checks the master key against the data (on a
    /// new database: records it).
    pub async fn open(
        url: &str,
        key: &MasterKey,
        options: &StoreOptions,
    ) -> Result<SqlStore, OpenError> {
        let backend = Backend::from_url(url).ok_or_else(|| OpenError::BadUrl(url.to_string()))?;
        let connect_err = |detail: String| OpenError::Connect {
            url: redact_url(url),
            detail,
        };
        let db = match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url).ok_or_else(|| OpenError::BadUrl(url.to_string()))?;
                Db::Sqlite(Arc::new(
                    Sqlite::open(&path, options.sqlite_readers).map_err(connect_err)?,
                ))
            }
            Backend::Postgres => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(|e| connect_err(e.to_string()))?,
            ),
        };
        let applied = db
            .migrate(&migrations(backend), unix_now())
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        for v in applied {
            tracing::info!(
                version = v,
                backend = backend.as_str(),
                "database schema migrated"
            );
        }
        let store = SqlStore {
            backend,
            audit: match &db {
                crate::db::Db::Postgres(_) => Some(crate::audit::AuditSink::start(db.clone())),
                crate::db::Db::Sqlite(_) => None,
            },
            db,
            sealer: Sealer::new(key),
            tap: Default::default(),
        };
        store.check_key(key).await?;
        Ok(store)
    }

    async fn check_key(&self, key: &MasterKey) -> Result<(), OpenError> {
        let b = |e: tessera_core::store::StoreError| OpenError::Backend(e.to_string());
        let sealed =
            data_encoding::BASE64.encode(&self.sealer.seal(KEY_CHECK_TEXT, KEY_CHECK_CONTEXT));
        // First start: record the check value (a concurrent first start of another node wins
        // or loses here; either way the value read back below decides).
        self.db
            .execute(
                "INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING",
                params![sealed],
                "key check",
            )
            .await
            .map_err(b)?;
        let stored = self
            .db
            .write_query(
                "SELECT value FROM meta WHERE key = 'key_check'",
                vec![],
                "key check",
            )
            .await
            .map_err(b)?
            .into_iter()
            .next()
            .map(|r| r.text("value"))
            .transpose()
            .map_err(b)?
            .unwrap_or_default();
        let given = key.id_hex();
        let raw = data_encoding::BASE64
            .decode(stored.as_bytes())
            .map_err(|_| OpenError::KeyCheckFailed {
                given: given.clone(),
            })?;
        match self.sealer.open(&raw, KEY_CHECK_CONTEXT) {
            Ok(text) if text.as_slice() == KEY_CHECK_TEXT => Ok(()),
            Ok(_) | Err(SealError::Forged) | Err(SealError::Malformed) => {
                Err(OpenError::KeyCheckFailed { given })
            }
            Err(SealError::OtherKey(expected)) => Err(OpenError::KeyMismatch { given, expected }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite:x.db"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
        assert_eq!(
            sqlite_path("sqlite://./data/a.db").as_deref(),
            Some("./data/a.db")
        );
        assert_eq!(
            sqlite_path("sqlite:/abs/a.db?mode=rwc").as_deref(),
            Some("/abs/a.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(
            redact_url("postgres://tessera:secret@db:5432/tessera"),
            "postgres://tessera:***@db:5432/tessera"
        );
        assert_eq!(redact_url("postgres://db/tessera"), "postgres://db/tessera");
    }
}
