//! The one place that talks to a database driver. Every query module writes its SQL once, with
//! `$N` placeholders, and runs it here:
//!
//! - SQLite through rusqlite, in process: reads run on the calling thread against cached prepared
//!   statements on a few reader connections (WAL lets them run beside the writer; each takes
//!   microseconds, so running it inline costs less than handing it to another thread). Writes go
//!   to one writer thread that commits whatever is queued in one transaction (group commit): every
//!   caller is answered after the commit that holds its write, and a commit serves many requests.
//!   A reader keeps its read transaction (its snapshot, and the pages it has cached) across
//!   queries until this process commits again (see [`Reader`]), so every acknowledged write is
//!   seen by every later read, without paying SQLite's locking and page-cache reset per query.
//! - PostgreSQL through sqlx's pool.
//!
//! Values and rows are a small common model ([`Val`], [`Row`]): integers, text, blobs and typed
//! NULLs, which both backends carry alike.

mod postgres;
mod sqlite;
mod value;

use postgres::*;
pub(crate) use sqlite::*;
use sqlx::postgres::PgPool;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tessera_core::store::StoreResult;
pub(crate) use value::*;

#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(Arc<Sqlite>),
    Postgres(PgPool),
}

/// One statement of a transaction.
pub(crate) struct Stmt {
    pub sql: String,
    pub params: Vec<Val>,
}

impl Stmt {
    pub(crate) fn new(sql: impl Into<String>, params: Vec<Val>) -> Self {
        Stmt {
            sql: sql.into(),
            params,
        }
    }
}

impl Db {
    /// Reads (on a reader connection for SQLite).
    pub(crate) async fn query(&self, sql: &str, params: Vec<Val>) -> StoreResult<Vec<Row>> {
        match self {
            Db::Sqlite(db) => {
                let sql = db.sql(sql);
                let commits = db.commits.load(Ordering::Acquire);
                let mut reader = db.reader();
                let conn = reader.renew(commits, Instant::now())?;
                Sqlite::run_query(conn, &db.columns, &sql, &params, "row")
            }
            Db::Postgres(pool) => {
                let rows =
                    sqlx::query_with(sqlx::AssertSqlSafe(sql.to_string()), pg_args(&params)?)
                        .fetch_all(pool)
                        .await
                        .map_err(pg_err("row"))?;
                pg_rows(&rows)
            }
        }
    }

    pub(crate) async fn query_one(&self, sql: &str, params: Vec<Val>) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// A statement that writes and returns rows (`… RETURNING`).
    pub(crate) async fn write_query(
        &self,
        sql: &str,
        params: Vec<Val>,
        what: &str,
    ) -> StoreResult<Vec<Row>> {
        self.write_query_answered(sql, params, what, Answer::Committed)
            .await
    }

    /// [`Db::write_query`], answered when `answer` says (PostgreSQL: always committed).
    pub(crate) async fn write_query_answered(
        &self,
        sql: &str,
        params: Vec<Val>,
        what: &str,
        answer: Answer,
    ) -> StoreResult<Vec<Row>> {
        match self {
            Db::Sqlite(db) => {
                let sql = db.sql(sql);
                db.write(|reply| WriteJob::Query {
                    sql,
                    params,
                    what: what.to_string(),
                    answer,
                    reply,
                })
                .await
            }
            Db::Postgres(pool) => {
                let rows =
                    sqlx::query_with(sqlx::AssertSqlSafe(sql.to_string()), pg_args(&params)?)
                        .fetch_all(pool)
                        .await
                        .map_err(pg_err(what))?;
                pg_rows(&rows)
            }
        }
    }

    /// A writing statement; returns the rows affected. `what` names the object for conflicts.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: Vec<Val>,
        what: &str,
    ) -> StoreResult<u64> {
        self.execute_answered(sql, params, what, Answer::Committed)
            .await
    }

    /// [`Db::execute`], answered when `answer` says (PostgreSQL: always committed).
    pub(crate) async fn execute_answered(
        &self,
        sql: &str,
        params: Vec<Val>,
        what: &str,
        answer: Answer,
    ) -> StoreResult<u64> {
        match self {
            Db::Sqlite(db) => {
                let sql = db.sql(sql);
                db.write(|reply| WriteJob::Execute {
                    sql,
                    params,
                    what: what.to_string(),
                    answer,
                    reply,
                })
                .await
            }
            Db::Postgres(pool) => Ok(sqlx::query_with(
                sqlx::AssertSqlSafe(sql.to_string()),
                pg_args(&params)?,
            )
            .execute(pool)
            .await
            .map_err(pg_err(what))?
            .rows_affected()),
        }
    }

    /// Runs statements in one transaction; all or nothing. Returns the rows each affected.
    pub(crate) async fn transaction(&self, stmts: Vec<Stmt>, what: &str) -> StoreResult<Vec<u64>> {
        match self {
            Db::Sqlite(db) => {
                let stmts = stmts
                    .into_iter()
                    .map(|s| (db.sql(&s.sql), s.params))
                    .collect();
                db.write(|reply| WriteJob::Transaction {
                    stmts,
                    what: what.to_string(),
                    reply,
                })
                .await
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(pg_err(what))?;
                let mut counts = Vec::with_capacity(stmts.len());
                for s in stmts {
                    counts.push(
                        sqlx::query_with(sqlx::AssertSqlSafe(s.sql), pg_args(&s.params)?)
                            .execute(&mut *tx)
                            .await
                            .map_err(pg_err(what))?
                            .rows_affected(),
                    );
                }
                tx.commit().await.map_err(pg_err(what))?;
                Ok(counts)
            }
        }
    }

    /// Applies the migrations not yet recorded in `schema_migrations`, each in a transaction.
    /// Concurrent starts (several nodes) serialise: SQLite by the write lock, PostgreSQL by an
    /// advisory lock held for the transaction.
    pub(crate) async fn migrate(
        &self,
        migrations: &[(i64, &str, &str)],
        now: i64,
    ) -> StoreResult<Vec<i64>> {
        const TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)";
        let mut applied = Vec::new();
        for (version, description, script) in migrations {
            let done = match self {
                Db::Sqlite(db) => {
                    let mut conn = lock(&db.writer);
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(sqlite_err("migration"))?;
                    tx.execute_batch(TABLE).map_err(sqlite_err("migration"))?;
                    let have: i64 = tx
                        .query_row(
                            "SELECT COUNT(*) FROM schema_migrations WHERE version = ?1",
                            [version],
                            |r| r.get(0),
                        )
                        .map_err(sqlite_err("migration"))?;
                    if have == 0 {
                        tx.execute_batch(script).map_err(sqlite_err("migration"))?;
                        tx.execute(
                            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
                            rusqlite::params![version, description, now],
                        )
                        .map_err(sqlite_err("migration"))?;
                    }
                    tx.commit().map_err(sqlite_err("migration"))?;
                    db.commits.fetch_add(1, Ordering::Release);
                    have > 0
                }
                Db::Postgres(pool) => {
                    let e = pg_err("migration");
                    let mut tx = pool.begin().await.map_err(&e)?;
                    sqlx::query("SELECT pg_advisory_xact_lock(7243110)")
                        .execute(&mut *tx)
                        .await
                        .map_err(&e)?;
                    sqlx::raw_sql(TABLE).execute(&mut *tx).await.map_err(&e)?;
                    let have: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM schema_migrations WHERE version = $1",
                    )
                    .bind(*version)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(&e)?;
                    if have == 0 {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(script.to_string()))
                            .execute(&mut *tx)
                            .await
                            .map_err(&e)?;
                        sqlx::query(
                            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
                        )
                        .bind(*version)
                        .bind(description.to_string())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(&e)?;
                    }
                    tx.commit().await.map_err(&e)?;
                    have > 0
                }
            };
            if !done {
                applied.push(*version);
            }
        }
        Ok(applied)
    }

    /// How many times a write answered as [`Answer::Decided`] was then lost (its batch failed
    /// to commit). Never moves on PostgreSQL, whose writes are answered once committed.
    pub(crate) fn lost_writes(&self) -> u64 {
        match self {
            Db::Sqlite(db) => db.lost.load(Ordering::Acquire),
            Db::Postgres(_) => 0,
        }
    }

    /// Waits until every write answered so far is committed: the writer runs writes in the
    /// order they came, so an empty write's commit covers them.
    pub(crate) async fn flush(&self) -> StoreResult<()> {
        match self {
            Db::Sqlite(_) => self.transaction(Vec::new(), "flush").await.map(|_| ()),
            Db::Postgres(_) => Ok(()),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Db::Sqlite(db) => {
                // Fold the write-ahead log into the database file (no snapshot may hold it).
                for r in db.readers.iter() {
                    lock(r).release();
                }
                let conn = lock(&db.writer);
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            }
            Db::Postgres(pool) => pool.close().await,
        }
    }
}
