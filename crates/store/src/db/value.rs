//! The common model of values and rows both backends carry alike: integers, text, blobs and
//! typed NULLs.

use std::sync::Arc;
use tessera_core::store::{StoreError, StoreResult};

/// A bound value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    NullInt,
    NullText,
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::Blob(v)
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::NullInt, Val::Int)
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::NullText, Val::Text)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Val::NullText, |s| Val::Text(s.to_string()))
    }
}

/// Builds a parameter list: `params![a, b, c]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => { vec![$($crate::db::Val::from($v)),*] };
}
pub(crate) use params;

/// A result row, read by column name.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(super) cols: Arc<Vec<String>>,
    pub(super) vals: Vec<Val>,
}

fn missing(col: &str) -> StoreError {
    StoreError::Backend(format!("column {col} missing or of another type"))
}

impl Row {
    pub(super) fn get(&self, col: &str) -> Option<&Val> {
        let i = self.cols.iter().position(|c| c == col)?;
        self.vals.get(i)
    }

    pub(crate) fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        match self.get(col) {
            Some(Val::Int(v)) => Ok(Some(*v)),
            Some(Val::NullInt | Val::NullText) => Ok(None),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn int(&self, col: &str) -> StoreResult<i64> {
        self.opt_int(col)?.ok_or_else(|| missing(col))
    }

    pub(crate) fn uint(&self, col: &str) -> StoreResult<u32> {
        let v = self.int(col)?;
        u32::try_from(v).map_err(|_| StoreError::Backend(format!("{col} out of range: {v}")))
    }

    pub(crate) fn flag(&self, col: &str) -> StoreResult<bool> {
        Ok(self.int(col)? != 0)
    }

    pub(crate) fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        match self.get(col) {
            Some(Val::Text(v)) => Ok(Some(v.clone())),
            Some(Val::NullInt | Val::NullText) => Ok(None),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn text(&self, col: &str) -> StoreResult<String> {
        self.opt_text(col)?.ok_or_else(|| missing(col))
    }

    pub(crate) fn blob(&self, col: &str) -> StoreResult<Vec<u8>> {
        match self.get(col) {
            Some(Val::Blob(v)) => Ok(v.clone()),
            _ => Err(missing(col)),
        }
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, col: &str) -> StoreResult<T> {
        serde_json::from_str(&self.text(col)?)
            .map_err(|e| StoreError::Backend(format!("{col}: {e}")))
    }
}

/// What a failed statement means: a unique key already taken, or anything else.
pub(super) fn classify(conflict: bool, what: &str, detail: String) -> StoreError {
    if conflict {
        StoreError::Conflict(what.to_string())
    } else {
        StoreError::Backend(detail)
    }
}
