//! Another product's database, read only: what `tessera migrate` reads a privacyIDEA or eduMFA
//! installation from. Opened by the SQLAlchemy URL its configuration names (`sqlite:////path`,
//! `postgresql+psycopg2://user:pw@host/db`, `mysql+pymysql://user:pw@host/db`); queries return
//! every value as text. Queries are written once, in PostgreSQL's and SQLite's dialect
//! (`CAST(x AS TEXT)`, `"Identifier"`), and adjusted for MySQL and MariaDB.

use std::path::Path;

/// A foreign database opened for reading.
pub enum ForeignDb {
    Sqlite(std::sync::Mutex<rusqlite::Connection>),
    Postgres(tokio::sync::Mutex<sqlx::PgConnection>),
    Mysql(tokio::sync::Mutex<sqlx::MySqlConnection>),
}

impl std::fmt::Debug for ForeignDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ForeignDb::Sqlite(_) => "ForeignDb::Sqlite",
            ForeignDb::Postgres(_) => "ForeignDb::Postgres",
            ForeignDb::Mysql(_) => "ForeignDb::Mysql",
        })
    }
}

/// One row: each column as text (NULL as `None`).
pub type Row = Vec<Option<String>>;

impl ForeignDb {
    /// Opens the database an SQLAlchemy URL names; a relative SQLite path is taken from `base`
    /// (the directory of the configuration file that names it).
    pub async fn open(url: &str, base: &Path) -> Result<ForeignDb, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("not a database URL: {}", crate::redact_url(url)))?;
        let dialect = scheme.split('+').next().unwrap_or(scheme);
        match dialect {
            "sqlite" => {
                // sqlite:////absolute/path, sqlite:///relative/path
                let path = rest.strip_prefix('/').unwrap_or(rest);
                let path = base.join(path);
                let conn = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                Ok(ForeignDb::Sqlite(std::sync::Mutex::new(conn)))
            }
            "postgresql" | "postgres" => {
                use sqlx::Connection as _;
                let url = format!("postgres://{rest}");
                let conn = sqlx::PgConnection::connect(&url)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", crate::redact_url(&url)))?;
                Ok(ForeignDb::Postgres(tokio::sync::Mutex::new(conn)))
            }
            "mysql" | "mariadb" => {
                use sqlx::Connection as _;
                // SQLAlchemy's query parameters are its driver's; sqlx takes the charset.
                let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
                let charset: Vec<&str> = query
                    .split('&')
                    .filter(|p| p.starts_with("charset="))
                    .collect();
                let url = if charset.is_empty() {
                    format!("mysql://{location}")
                } else {
                    format!("mysql://{location}?{}", charset.join("&"))
                };
                let conn = sqlx::MySqlConnection::connect(&url)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", crate::redact_url(&url)))?;
                Ok(ForeignDb::Mysql(tokio::sync::Mutex::new(conn)))
            }
            other => Err(format!(
                "the database type {other} is not supported (SQLite, PostgreSQL, MySQL and MariaDB are)"
            )),
        }
    }

    /// Runs a query whose columns are all cast to text (`CAST(x AS TEXT)`), identifiers in
    /// double quotes.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Row>, String> {
        match self {
            ForeignDb::Sqlite(conn) => {
                let conn = conn
                    .lock()
                    .map_err(|_| "the database connection was poisoned".to_string())?;
                let mut stmt = conn.prepare(sql).map_err(|e| format!("{e} in: {sql}"))?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map([], |row| {
                        (0..n)
                            .map(|i| row.get::<_, Option<String>>(i))
                            .collect::<rusqlite::Result<Row>>()
                    })
                    .map_err(|e| format!("{e} in: {sql}"))?;
                rows.collect::<rusqlite::Result<Vec<Row>>>()
                    .map_err(|e| format!("{e} in: {sql}"))
            }
            ForeignDb::Postgres(conn) => {
                let mut conn = conn.lock().await;
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| format!("{e} in: {sql}"))?;
                text_rows(&rows, sql)
            }
            ForeignDb::Mysql(conn) => {
                let sql = mysql_dialect(sql);
                let mut conn = conn.lock().await;
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| format!("{e} in: {sql}"))?;
                text_rows(&rows, &sql)
            }
        }
    }

    /// Whether a table exists (older installations lack some).
    pub async fn has_table(&self, table: &str) -> bool {
        let sql = match self {
            ForeignDb::Sqlite(_) => format!(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{}'",
                table.replace('\'', "")
            ),
            ForeignDb::Postgres(_) => format!(
                "SELECT CAST(tablename AS TEXT) FROM pg_tables WHERE tablename = '{}'",
                table.replace('\'', "")
            ),
            ForeignDb::Mysql(_) => format!(
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = '{}'",
                table.replace('\'', "")
            ),
        };
        self.rows(&sql).await.is_ok_and(|r| !r.is_empty())
    }
}

/// The rows of an sqlx answer whose columns are all text.
fn text_rows<R>(rows: &[R], sql: &str) -> Result<Vec<Row>, String>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i))
                .collect::<Result<Row, _>>()
                .map_err(|e| format!("{e} in: {sql}"))
        })
        .collect()
}

/// A query in PostgreSQL's dialect as MySQL reads it: `CAST(x AS CHAR)` for `CAST(x AS TEXT)`,
/// backquotes for double-quoted identifiers (the queries here have no string literals with
/// double quotes).
fn mysql_dialect(sql: &str) -> String {
    sql.replace(" AS TEXT)", " AS CHAR)").replace('"', "`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_in_mysql_dialect() {
        assert_eq!(
            mysql_dialect(r#"SELECT CAST("Key" AS TEXT), CAST(id AS TEXT) FROM tokeninfo"#),
            "SELECT CAST(`Key` AS CHAR), CAST(id AS CHAR) FROM tokeninfo"
        );
    }
}
