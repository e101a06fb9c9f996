//! PostgreSQL through sqlx: arguments and rows in the common model.

use super::value::*;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, Column, Row as _, TypeInfo};
use std::sync::Arc;
use tessera_core::store::{StoreError, StoreResult};

pub(super) fn pg_args(params: &[Val]) -> StoreResult<PgArguments> {
    let mut args = PgArguments::default();
    for p in params {
        let r = match p {
            Val::Int(v) => args.add(*v),
            Val::Text(v) => args.add(v.clone()),
            Val::Blob(v) => args.add(v.clone()),
            Val::NullInt => args.add(None::<i64>),
            Val::NullText => args.add(None::<String>),
        };
        r.map_err(|e| StoreError::Backend(e.to_string()))?;
    }
    Ok(args)
}

pub(super) fn pg_err(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| {
        let conflict = matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation());
        classify(conflict, what, e.to_string())
    }
}

fn pg_row(row: &PgRow, cols: &Arc<Vec<String>>) -> StoreResult<Row> {
    let mut vals = Vec::with_capacity(cols.len());
    for (i, col) in row.columns().iter().enumerate() {
        let e = |e: sqlx::Error| StoreError::Backend(e.to_string());
        let v = match col.type_info().name() {
            "INT8" => row.try_get::<Option<i64>, _>(i).map_err(e)?.into(),
            "INT4" => row
                .try_get::<Option<i32>, _>(i)
                .map_err(e)?
                .map(i64::from)
                .into(),
            "INT2" => row
                .try_get::<Option<i16>, _>(i)
                .map_err(e)?
                .map(i64::from)
                .into(),
            "BOOL" => row
                .try_get::<Option<bool>, _>(i)
                .map_err(e)?
                .map(i64::from)
                .into(),
            "BYTEA" => match row.try_get::<Option<Vec<u8>>, _>(i).map_err(e)? {
                Some(b) => Val::Blob(b),
                None => Val::NullText,
            },
            _ => row.try_get::<Option<String>, _>(i).map_err(e)?.into(),
        };
        vals.push(v);
    }
    Ok(Row {
        cols: cols.clone(),
        vals,
    })
}

pub(super) fn pg_rows(rows: &[PgRow]) -> StoreResult<Vec<Row>> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let cols: Arc<Vec<String>> = Arc::new(
        first
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect(),
    );
    rows.iter().map(|r| pg_row(r, &cols)).collect()
}
