//! Tessera's store on SQLite (the embedded default) and PostgreSQL (for several nodes).
//!
//! One query set serves both backends through sqlx's `Any` driver (`$N` placeholders, integers,
//! text and blobs only); the DDL differs, so each backend has its own forward-only migration
//! folder. On SQLite all writes go through a single connection (no lock contention inside the
//! process) while reads use a small pool; WAL mode lets them run side by side.
//!
//! Secrets are sealed with AES-256-GCM under the master key ([`seal`]); opening a database with
//! the wrong key is refused before anything else happens.
//!
//! May depend on: `tessera-core`.

mod audit;
mod config;
mod flow;
mod open;
mod rows;
pub mod seal;
mod store_impl;
mod tokens;
mod users;

pub use open::{Backend, OpenError, StoreOptions};
pub use seal::{KeyError, MasterKey, Sealer};

use sqlx::AnyPool;

/// The SQL implementation of [`tessera_core::store::Store`].
#[derive(Debug, Clone)]
pub struct SqlStore {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    sealer: Sealer,
}

impl SqlStore {
    pub fn backend_kind(&self) -> Backend {
        self.backend
    }

    /// Closes the pools (waits for connections in use to be returned).
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}
