//! Tessera's store on SQLite (the embedded default) and PostgreSQL (for several nodes).
//!
//! One set of SQL statements (`$N` placeholders; integers, text and blobs only) serves both
//! backends through a small executor ([`db`]): SQLite runs in process through rusqlite, with all
//! writes on one connection and reads on a few more (WAL lets them run side by side); PostgreSQL
//! through sqlx's pool. The DDL differs, so each backend has its own forward-only migration
//! folder.
//!
//! Secrets are sealed with AES-256-GCM under the master key ([`seal`]); opening a database with
//! the wrong key is refused before anything else happens.
//!
//! [`foreign`] reads another product's database for `tessera migrate`.
//!
//! May depend on: `tessera-core`, `tessera-otp`.

mod audit;
mod bulk;
mod config;
mod db;
mod flow;
pub mod foreign;
mod open;
mod outbox;
pub mod seal;
mod tokens;
mod users;

pub use open::{Backend, OpenError, StoreOptions, redact_url};
pub use seal::{KeyError, MasterKey, Sealer};

/// The SQL implementation of [`tessera_core::store::Store`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    db: db::Db,
    sealer: Sealer,
    /// PostgreSQL's audit batching (SQLite's writer thread batches by itself).
    audit: Option<audit::AuditSink>,
    /// Sees every audit record this process writes (syslog forwarding).
    tap: std::sync::Arc<std::sync::OnceLock<AuditTap>>,
}

/// A function that sees each audit record once it is written. It must not block: the record
/// is on the way to an answer.
#[derive(Clone)]
pub struct AuditTap(pub std::sync::Arc<dyn Fn(&tessera_core::model::AuditRecord) + Send + Sync>);

impl std::fmt::Debug for AuditTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditTap")
    }
}

impl SqlStore {
    /// Sets the function that sees every audit record written from now on (once).
    pub fn set_audit_tap(&self, tap: AuditTap) -> bool {
        self.tap.set(tap).is_ok()
    }

    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Finishes pending work: closes the PostgreSQL pool, checkpoints SQLite's log.
    pub async fn close(&self) {
        self.db.close().await;
    }
}
