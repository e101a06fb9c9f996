//! Row decoding and error mapping shared by the query modules.

use sqlx::Row;
use sqlx::any::AnyRow;
use tessera_core::store::StoreError;

/// Maps a database error; unique-key violations become `Conflict(what)`.
pub(crate) fn db_err(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e: sqlx::Error| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what.into()),
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(col).map_err(backend)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(col).map_err(backend)
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    row.try_get::<i64, _>(col).map_err(backend)
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    row.try_get::<Option<i64>, _>(col).map_err(backend)
}

pub(crate) fn uint(row: &AnyRow, col: &str) -> Result<u32, StoreError> {
    let v = int(row, col)?;
    u32::try_from(v).map_err(|_| StoreError::Backend(format!("{col} out of range: {v}")))
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool, StoreError> {
    Ok(int(row, col)? != 0)
}

pub(crate) fn blob(row: &AnyRow, col: &str) -> Result<Vec<u8>, StoreError> {
    row.try_get::<Vec<u8>, _>(col).map_err(backend)
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &str,
) -> Result<T, StoreError> {
    let t = text(row, col)?;
    serde_json::from_str(&t).map_err(|e| StoreError::Backend(format!("{col}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A LIKE pattern matching `needle` anywhere, with `\` escaping.
pub(crate) fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

pub(crate) fn b(v: bool) -> i64 {
    i64::from(v)
}
