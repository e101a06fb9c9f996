//! Connecting, migrating and checking the master key.

use crate::SqlStore;
use crate::seal::{MasterKey, SealError, Sealer};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Executor, SqlSafeStr};
use std::borrow::Cow;
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

/// Pool sizes.
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

fn migrator(backend: Backend) -> Migrator {
    let sql: &'static str = match backend {
        Backend::Sqlite => include_str!("../migrations/sqlite/0001_initial.sql"),
        Backend::Postgres => include_str!("../migrations/postgres/0001_initial.sql"),
    };
    let migrations = vec![Migration::new(
        1,
        Cow::Borrowed("initial"),
        MigrationType::Simple,
        sql.into_sql_str(),
        false,
    )];
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

impl SqlStore {
    /// Connects, applies pending migrations and checks the master key against the data (on a
    /// new database: records it).
    pub async fn open(
        url: &str,
        key: &MasterKey,
        options: &StoreOptions,
    ) -> Result<SqlStore, OpenError> {
        install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| OpenError::BadUrl(url.to_string()))?;
        let connect_err = |e: sqlx::Error| OpenError::Connect {
            url: redact_url(url),
            detail: e.to_string(),
        };
        let (read, write) = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url);
                let write = sqlite_pool(1).connect(&url).await.map_err(connect_err)?;
                let read = sqlite_pool(options.sqlite_readers.max(1))
                    .connect(&url)
                    .await
                    .map_err(connect_err)?;
                (read, write)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .map_err(connect_err)?;
                (pool.clone(), pool)
            }
        };
        migrator(backend)
            .run(&write)
            .await
            .map_err(|e| OpenError::Migrate(e.to_string()))?;
        let store = SqlStore {
            backend,
            read,
            write,
            sealer: Sealer::new(key),
        };
        store.check_key(key).await?;
        Ok(store)
    }

    async fn check_key(&self, key: &MasterKey) -> Result<(), OpenError> {
        let b = |e: sqlx::Error| OpenError::Backend(e.to_string());
        let sealed =
            data_encoding::BASE64.encode(&self.sealer.seal(KEY_CHECK_TEXT, KEY_CHECK_CONTEXT));
        // First start: record the check value (a concurrent first start of another node wins
        // or loses here; either way the value read back below decides).
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(sealed)
        .execute(&self.write)
        .await
        .map_err(b)?;
        let stored: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
            .fetch_one(&self.write)
            .await
            .map_err(b)?;
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

fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(max.min(1))
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; \
                     PRAGMA busy_timeout = 10000; \
                     PRAGMA foreign_keys = ON; \
                     PRAGMA temp_store = MEMORY;",
                )
                .await?;
                Ok(())
            })
        })
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
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
        assert_eq!(
            redact_url("postgres://tessera:secret@db:5432/tessera"),
            "postgres://tessera:***@db:5432/tessera"
        );
        assert_eq!(redact_url("postgres://db/tessera"), "postgres://db/tessera");
    }
}
