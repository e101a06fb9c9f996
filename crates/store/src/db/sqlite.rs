//! SQLite through rusqlite, in process: one writer thread with group commit, a few reader
//! connections that keep their snapshot until this process commits again, checkpoints.

use super::value::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tessera_core::store::{StoreError, StoreResult};

/// When the writer answers a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// After the commit that holds it.
    Committed,
    /// As soon as it ran: its result is final (the writer runs writes one after another, so any
    /// later write sees it) but it becomes durable only with its batch's commit. For the writes
    /// that decide a login, whose caller makes a committed write (the audit record) before it
    /// answers anyone and then checks [`Db::lost_writes`]: one commit wait per login, not two.
    Decided,
}

/// A write for the writer thread, with where to send its result.
pub(super) enum WriteJob {
    Execute {
        sql: Arc<str>,
        params: Vec<Val>,
        what: String,
        answer: Answer,
        reply: tokio::sync::oneshot::Sender<StoreResult<u64>>,
    },
    Query {
        sql: Arc<str>,
        params: Vec<Val>,
        what: String,
        answer: Answer,
        reply: tokio::sync::oneshot::Sender<StoreResult<Vec<Row>>>,
    },
    Transaction {
        stmts: Vec<(Arc<str>, Vec<Val>)>,
        what: String,
        reply: tokio::sync::oneshot::Sender<StoreResult<Vec<u64>>>,
    },
}

impl WriteJob {
    pub(super) fn fail(self, e: StoreError) {
        match self {
            WriteJob::Execute { reply, .. } => drop(reply.send(Err(e))),
            WriteJob::Query { reply, .. } => drop(reply.send(Err(e))),
            WriteJob::Transaction { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// Writes committed together at most.
const WRITE_BATCH: usize = 512;
/// How long a batch takes in the writes that keep arriving, at most.
const WRITE_BATCH_TIME: Duration = Duration::from_millis(2);

/// A finished write waiting for its commit: sends its result, or the commit's error.
type Pending = Box<dyn FnOnce(Option<&str>) + Send>;

/// Answers a write now (decided) or queues its answer for the commit.
fn answer<T: Send + 'static>(
    done: &mut Vec<Pending>,
    decided: &mut bool,
    when: Answer,
    reply: tokio::sync::oneshot::Sender<StoreResult<T>>,
    result: StoreResult<T>,
) {
    match when {
        Answer::Committed => done.push(pending(reply, result)),
        Answer::Decided => {
            *decided = true;
            let _ = reply.send(result);
        }
    }
}

fn pending<T: Send + 'static>(
    reply: tokio::sync::oneshot::Sender<StoreResult<T>>,
    result: StoreResult<T>,
) -> Pending {
    Box::new(move |commit_error: Option<&str>| {
        let result = match (commit_error, result) {
            (Some(e), Ok(_)) => Err(StoreError::Backend(format!("commit failed: {e}"))),
            (_, r) => r,
        };
        let _ = reply.send(result);
    })
}

/// The writer thread: takes the queued writes, runs each (a multi-statement transaction inside a
/// savepoint, so it stays all or nothing), commits once, then answers every caller.
fn writer_loop(
    conn: rusqlite::Connection,
    rx: std::sync::mpsc::Receiver<WriteJob>,
    commits: Arc<AtomicU64>,
    columns: Arc<Columns>,
    readers: Arc<[Mutex<Reader>]>,
    lost: Arc<AtomicU64>,
) {
    let mut restarted = Instant::now();
    while let Ok(first) = rx.recv() {
        run_batch(&conn, first, &rx, &commits, &columns, &lost);
        if restarted.elapsed() >= WAL_RESTART_EVERY {
            restart_wal(&conn, &readers);
            restarted = Instant::now();
        }
    }
}

/// How often the writer lets the write-ahead log start again from its beginning.
const WAL_RESTART_EVERY: Duration = Duration::from_millis(250);

/// Copies what is left of the write-ahead log into the database and has the next commit write
/// the log from its beginning again, so that it does not grow without end.
///
/// SQLite restarts the log only at a moment when no reader still uses it, and readers keep
/// their snapshots between commits (see [`Reader`]): so the readers are held and their
/// snapshots ended for the moment this takes. The checkpoint thread has already copied nearly
/// everything, so that is the copy of the last commit or two and a sync.
fn restart_wal(conn: &rusqlite::Connection, readers: &[Mutex<Reader>]) {
    let mut held: Vec<MutexGuard<'_, Reader>> = readers.iter().map(lock).collect();
    for r in held.iter_mut() {
        r.release();
    }
    // Another process reading (`sqlite3 .backup`) keeps the log in use: then the restart waits
    // for a later turn instead of for the busy timeout, which would stall every request.
    let _ = conn.busy_timeout(Duration::ZERO);
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(RESTART);") {
        tracing::warn!(error = %e, "SQLite write-ahead log checkpoint failed");
    }
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    drop(held);
}

/// Runs one of the writer's fixed statements (BEGIN, COMMIT, …) through the statement cache.
fn control(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `first` and the writes that arrive while the batch runs (up to [`WRITE_BATCH`] and
/// [`WRITE_BATCH_TIME`]; among them the audit records of the logins whose deciding writes the
/// batch answered), then commits once.
fn run_batch(
    conn: &rusqlite::Connection,
    first: WriteJob,
    rx: &std::sync::mpsc::Receiver<WriteJob>,
    commits: &AtomicU64,
    columns: &Columns,
    lost: &AtomicU64,
) {
    let started = Instant::now();
    let mut done: Vec<Pending> = Vec::new();
    // Whether a write of this batch was answered before its commit.
    let mut decided = false;
    let began = control(conn, "BEGIN IMMEDIATE");
    if let Err(e) = &began {
        first.fail(StoreError::Backend(format!("cannot begin a write: {e}")));
        return;
    }
    let mut next = Some(first);
    let mut ran = 0;
    while let Some(job) = next.take() {
        ran += 1;
        match job {
            WriteJob::Execute {
                sql,
                params,
                what,
                answer: when,
                reply,
            } => {
                let result = Sqlite::run_execute(conn, &sql, &params, &what);
                answer(&mut done, &mut decided, when, reply, result);
            }
            WriteJob::Query {
                sql,
                params,
                what,
                answer: when,
                reply,
            } => {
                let result = Sqlite::run_query(conn, columns, &sql, &params, &what);
                answer(&mut done, &mut decided, when, reply, result);
            }
            WriteJob::Transaction { stmts, what, reply } => {
                let result = (|| {
                    conn.execute_batch("SAVEPOINT tessera_job")
                        .map_err(sqlite_err(&what))?;
                    let mut counts = Vec::with_capacity(stmts.len());
                    for (sql, params) in &stmts {
                        match Sqlite::run_execute(conn, sql, params, &what) {
                            Ok(n) => counts.push(n),
                            Err(e) => {
                                let _ = conn
                                    .execute_batch("ROLLBACK TO tessera_job; RELEASE tessera_job");
                                return Err(e);
                            }
                        }
                    }
                    conn.execute_batch("RELEASE tessera_job")
                        .map_err(sqlite_err(&what))?;
                    Ok(counts)
                })();
                done.push(pending(reply, result));
            }
        }
        if conn.is_autocommit() {
            // An I/O or disk-full error rolled the whole transaction back: nothing of this
            // batch is stored.
            if decided {
                lost.fetch_add(1, Ordering::Release);
            }
            for p in done {
                p(Some("the transaction was rolled back after an error"));
            }
            return;
        }
        if ran < WRITE_BATCH && started.elapsed() < WRITE_BATCH_TIME {
            next = rx.try_recv().ok();
        }
    }
    let commit = control(conn, "COMMIT");
    let commit_error = commit.err().map(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        e.to_string()
    });
    if commit_error.is_some() && decided {
        lost.fetch_add(1, Ordering::Release);
    }
    // Before anyone is answered: every read that starts after an answer takes a new snapshot.
    commits.fetch_add(1, Ordering::Release);
    for p in done {
        p(commit_error.as_deref());
    }
}

/// The column names of each query, by its text (as its prepared statement is cached too).
#[derive(Default)]
pub(super) struct Columns(Mutex<HashMap<Arc<str>, Arc<Vec<String>>>>);

impl Columns {
    pub(super) fn of(&self, sql: &Arc<str>, stmt: &rusqlite::Statement<'_>) -> Arc<Vec<String>> {
        let mut cache = lock(&self.0);
        if let Some(c) = cache.get(sql) {
            return c.clone();
        }
        let cols: Arc<Vec<String>> = Arc::new(stmt.column_names().map(|c| c.to_string()).collect());
        if cache.len() < 10_000 {
            cache.insert(sql.clone(), cols.clone());
        }
        cols
    }
}

/// rusqlite connections: one writer thread, several readers.
pub(crate) struct Sqlite {
    /// For migrations and the final checkpoint (no other writes run then).
    pub(super) writer: Mutex<rusqlite::Connection>,
    pub(super) jobs: std::sync::mpsc::Sender<WriteJob>,
    /// Dropped with the store: stops the checkpoint thread.
    pub(super) _checkpoints: std::sync::mpsc::Sender<()>,
    pub(super) readers: Arc<[Mutex<Reader>]>,
    /// Commits made by this process (the writer thread, migrations): a reader's snapshot older
    /// than the last of them is renewed before its next query.
    pub(super) commits: Arc<AtomicU64>,
    /// Batches whose commit failed after a write of theirs was answered as decided.
    pub(super) lost: Arc<AtomicU64>,
    /// `$N` → `?N` translations, by original text.
    pub(super) translated: Mutex<HashMap<String, Arc<str>>>,
    pub(super) columns: Arc<Columns>,
    pub(super) next_reader: std::sync::atomic::AtomicUsize,
}

/// How long a reader may keep a snapshot without a commit of this process in between: what
/// another process (the CLI, `sqlite3`) writes is seen after this at the latest.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(5);

/// A reader connection and the read transaction it holds open.
///
/// SQLite begins and ends a read transaction around every statement run outside one, and in WAL
/// mode that takes and drops shared-memory locks (a process-wide mutex and `fcntl` calls) and,
/// whenever the database changed, throws the connection's page cache away. Under load that was
/// half of the time a query took. A reader therefore keeps one read transaction for as long as
/// nothing was committed by this process ([`Sqlite::commits`]) and for at most
/// [`SNAPSHOT_MAX_AGE`]; queries in between share its snapshot and its cached pages.
pub(crate) struct Reader {
    pub(super) conn: rusqlite::Connection,
    /// The commit count and the time the open read transaction began at.
    pub(super) snapshot: Option<(u64, Instant)>,
}

impl Reader {
    pub(super) fn new(conn: rusqlite::Connection) -> Self {
        Reader {
            conn,
            snapshot: None,
        }
    }

    /// Ends the read transaction (letting checkpoints past it).
    pub(super) fn release(&mut self) {
        if self.snapshot.take().is_some() && !self.conn.is_autocommit() {
            let _ = control(&self.conn, "COMMIT");
        }
    }

    /// Makes sure the connection reads a snapshot taken after commit number `commits`.
    pub(super) fn renew(
        &mut self,
        commits: u64,
        now: Instant,
    ) -> StoreResult<&rusqlite::Connection> {
        let fresh = self
            .snapshot
            .is_some_and(|(c, at)| c == commits && now.duration_since(at) < SNAPSHOT_MAX_AGE)
            && !self.conn.is_autocommit();
        if !fresh {
            self.release();
            // Deferred: the snapshot is taken by the first query, after `commits` was read.
            control(&self.conn, "BEGIN").map_err(sqlite_err("read"))?;
            self.snapshot = Some((commits, now));
        }
        Ok(&self.conn)
    }
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sqlite({} readers)", self.readers.len())
    }
}

fn writer_gone() -> StoreError {
    StoreError::Backend("the SQLite writer thread stopped".into())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// SQLite numbers parameters by first appearance for `$name`; `?N` is the explicit form.
fn to_sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

pub(super) fn sqlite_err(what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| {
        let conflict = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        );
        classify(conflict, what, e.to_string())
    }
}

impl rusqlite::types::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Val::NullInt | Val::NullText => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// How long a statement waits for a lock another process holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

fn open_sqlite(path: &str, writer: bool) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(128);
    if writer {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
    )?;
    Ok(conn)
}

impl Sqlite {
    pub(crate) fn open(path: &str, readers: u32) -> Result<Sqlite, String> {
        let writer = open_sqlite(path, true).map_err(|e| e.to_string())?;
        // The database file holds sealed secrets and password hashes: owner only.
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
        }
        let mut pool = Vec::new();
        for _ in 0..readers.max(1) {
            pool.push(Mutex::new(Reader::new(
                open_sqlite(path, false).map_err(|e| e.to_string())?,
            )));
        }
        let readers: Arc<[Mutex<Reader>]> = pool.into();
        let commits = Arc::new(AtomicU64::new(0));
        let (jobs, rx) = std::sync::mpsc::channel();
        let batch_conn = open_sqlite(path, false).map_err(|e| e.to_string())?;
        // Checkpoints (copying the write-ahead log into the database file, with an fsync) run
        // on their own thread, so that commits do not wait for them; the writer checkpoints
        // itself only if the log grows past 40 MB.
        batch_conn
            .pragma_update(None, "wal_autocheckpoint", 10_000)
            .map_err(|e| e.to_string())?;
        // Only this connection writes, so its page cache stays valid: let it hold the indexes
        // every request touches (64 MiB at most).
        batch_conn
            .pragma_update(None, "cache_size", -65_536)
            .map_err(|e| e.to_string())?;
        let checkpoint_conn = open_sqlite(path, false).map_err(|e| e.to_string())?;
        let (checkpoints, stop) = std::sync::mpsc::channel::<()>();
        let idle = readers.clone();
        std::thread::Builder::new()
            .name("tessera-sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop.recv_timeout(std::time::Duration::from_millis(500))
                {
                    // A reader left idle would keep its old snapshot, and no checkpoint could
                    // copy what was committed after it: end those first.
                    let now = Instant::now();
                    for r in idle.iter() {
                        if let Ok(mut r) = r.try_lock()
                            && r.snapshot
                                .is_some_and(|(_, at)| now.duration_since(at) >= SNAPSHOT_MAX_AGE)
                        {
                            r.release();
                        }
                    }
                    let _ = checkpoint_conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
                }
            })
            .map_err(|e| format!("cannot start the SQLite checkpoint thread: {e}"))?;
        let writer_commits = commits.clone();
        let columns = Arc::new(Columns::default());
        let writer_columns = columns.clone();
        let writer_readers = readers.clone();
        let lost = Arc::new(AtomicU64::new(0));
        let writer_lost = lost.clone();
        std::thread::Builder::new()
            .name("tessera-sqlite-writer".into())
            .spawn(move || {
                writer_loop(
                    batch_conn,
                    rx,
                    writer_commits,
                    writer_columns,
                    writer_readers,
                    writer_lost,
                )
            })
            .map_err(|e| format!("cannot start the SQLite writer thread: {e}"))?;
        Ok(Sqlite {
            writer: Mutex::new(writer),
            jobs,
            _checkpoints: checkpoints,
            readers,
            commits,
            lost,
            translated: Mutex::new(HashMap::new()),
            columns,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Hands a write to the writer thread and waits until it is committed.
    pub(super) async fn write<T>(
        &self,
        job: impl FnOnce(tokio::sync::oneshot::Sender<StoreResult<T>>) -> WriteJob,
    ) -> StoreResult<T> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    pub(super) fn sql(&self, sql: &str) -> Arc<str> {
        let mut cache = lock(&self.translated);
        if let Some(t) = cache.get(sql) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(to_sqlite_placeholders(sql));
        if cache.len() < 10_000 {
            cache.insert(sql.to_string(), t.clone());
        }
        t
    }

    pub(super) fn reader(&self) -> MutexGuard<'_, Reader> {
        // A free reader if there is one, else wait for the next in turn.
        for r in self.readers.iter() {
            if let Ok(g) = r.try_lock() {
                return g;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        lock(&self.readers[i])
    }

    pub(super) fn run_query(
        conn: &rusqlite::Connection,
        columns: &Columns,
        sql: &Arc<str>,
        params: &[Val],
        what: &str,
    ) -> StoreResult<Vec<Row>> {
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err(what))?;
        let cols = columns.of(sql, &stmt);
        let n = cols.len();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(sqlite_err(what))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_err(what))? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                use rusqlite::types::ValueRef;
                vals.push(match row.get_ref(i).map_err(sqlite_err(what))? {
                    ValueRef::Null => Val::NullText,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Real(v) => Val::Int(v as i64),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                });
            }
            out.push(Row {
                cols: cols.clone(),
                vals,
            });
        }
        Ok(out)
    }

    pub(super) fn run_execute(
        conn: &rusqlite::Connection,
        sql: &str,
        params: &[Val],
        what: &str,
    ) -> StoreResult<u64> {
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_err(what))?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(sqlite_err(what))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn placeholders_become_explicit_indexes() {
        assert_eq!(
            to_sqlite_placeholders("UPDATE t SET a = $2 + 1 WHERE b = $1 AND c = '$x'"),
            "UPDATE t SET a = ?2 + 1 WHERE b = ?1 AND c = '$x'"
        );
    }
}
