//! The Store contract, run on SQLite, on PostgreSQL and on the in-memory store that tests of
//! the services use: one module per role trait (`contract/*.rs`), each listing its cases in
//! `contract!` (every store) or `contract_sql!` (the database itself).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::Arc;
use tessera_core::ids::{AppName, RealmName, Serial, SourceName, TransactionId, UserId, UserRef};
use tessera_core::model::{
    AdminAccount, AdminRole, AdminSession, AttemptResult, AuditQuery, AuditRecord, Channel,
    CodeKind, Leg, NewLocalUser, NewToken, OutboxMessage, OutboxStatus, SentCode, TokenKind,
    TokenPatch, TokenState, Transaction, TxOrigin, TxStatus, User, UserPatch,
};
// Cases call the roles on `dyn Store`; what they call on an `SqlStore` itself needs its role.
use tessera_core::store::{
    ConfigKind, FailKind, LockKey, LockPolicy, Reservation, StoreError, TokenFilter, UserFilter,
};
use tessera_core::store::{MetaStore, Store, UserStore};
use tessera_otp::{Algorithm, Digits};
use tessera_store::{MasterKey, OpenError, SqlStore, StoreOptions};
use tessera_testkit::PgDatabase;
use zeroize::Zeroizing;

/// A store under test: SQLite, PostgreSQL, or the in-memory store of `tessera_core::testing`
/// (which must keep the same contract, since tests of the services run on it).
struct Harness {
    store: Arc<dyn Store>,
    /// The SQL store behind `store` (none in memory), for the cases about the database itself.
    sql: Option<Sql>,
}

struct Sql {
    store: Arc<SqlStore>,
    url: String,
    key: MasterKey,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

/// A second node on the same data.
struct Node {
    store: Arc<dyn Store>,
    sql: Option<Arc<SqlStore>>,
}

impl Node {
    async fn close(self) {
        if let Some(sql) = self.sql {
            sql.close().await;
        }
    }
}

impl Harness {
    fn of(sql: Sql) -> Harness {
        Harness {
            store: sql.store.clone(),
            sql: Some(sql),
        }
    }

    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let key = MasterKey::generate();
        let store = SqlStore::open(&url, &key, &StoreOptions::default())
            .await
            .unwrap();
        Harness::of(Sql {
            store: Arc::new(store),
            url,
            key,
            _dir: Some(dir),
            _pg: None,
        })
    }

    async fn postgres() -> Harness {
        let pg = PgDatabase::create().await;
        let key = MasterKey::generate();
        let store = SqlStore::open(&pg.url, &key, &StoreOptions::default())
            .await
            .unwrap();
        Harness::of(Sql {
            store: Arc::new(store),
            url: pg.url.clone(),
            key,
            _dir: None,
            _pg: Some(pg),
        })
    }

    async fn memory() -> Harness {
        Harness {
            store: Arc::new(tessera_core::testing::MemStore::new()),
            sql: None,
        }
    }

    /// The SQL side, for a case that runs on SQL stores only.
    fn sql(&self) -> &Sql {
        self.sql.as_ref().expect("a case for SQL stores only")
    }

    /// Another node: another store on the same database (in memory, the same store).
    async fn another_node(&self) -> Node {
        match &self.sql {
            Some(sql) => {
                let other = Arc::new(
                    SqlStore::open(&sql.url, &sql.key, &StoreOptions::default())
                        .await
                        .unwrap(),
                );
                Node {
                    store: other.clone(),
                    sql: Some(other),
                }
            }
            None => Node {
                store: self.store.clone(),
                sql: None,
            },
        }
    }
}

/// The cases every store keeps, run on each.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        contract_sql!($($name),*);
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::memory().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

/// Cases about the database itself (keys, files, other processes): SQLite and PostgreSQL.
macro_rules! contract_sql {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

#[path = "contract/audit_admin.rs"]
mod audit_admin;
#[path = "contract/flow.rs"]
mod flow;
#[path = "contract/locks.rs"]
mod locks;
#[path = "contract/meta_config.rs"]
mod meta_config;
#[path = "contract/tokens.rs"]
mod tokens;
#[path = "contract/users.rs"]
mod users;
#[path = "contract/web_state.rs"]
mod web_state;

fn user(source: &str, id: &str, name: &str) -> User {
    User {
        source: SourceName::from(source),
        id: UserId::from(id),
        username: name.into(),
        given_name: Some("Alice".into()),
        surname: Some("Liddell".into()),
        email: Some(format!("{name}@example.org")),
        phone: Some("+4930123456".into()),
        manager: None,
        groups: vec!["staff".into()],
        enabled: true,
        expires_at: None,
        attributes: Default::default(),
    }
}

fn token(serial: &str, owner: Option<UserRef>) -> NewToken {
    NewToken {
        serial: Serial::from(serial),
        kind: TokenKind::Totp,
        owner,
        description: "phone".into(),
        seed: Zeroizing::new(b"12345678901234567890".to_vec()),
        algorithm: Algorithm::Sha1,
        digits: Digits::Six,
        period: 30,
        counter: 0,
        window: 1,
        sync_window: 1000,
        pin_hash: None,
        max_fail: 3,
        fail_count: 0,
        state: TokenState::Enabled,
        created_at: 1_700_000_000,
    }
}
