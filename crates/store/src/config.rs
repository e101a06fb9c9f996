//! Meta values, settings and configuration documents.

use crate::SqlStore;
use crate::rows::{backend, int, text};
use serde_json::{Map, Value};
use tessera_core::store::{ConfigDoc, ConfigKind, StoreResult};

impl SqlStore {
    pub(crate) async fn meta_impl(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = $1")
            .bind(key.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)
    }

    pub(crate) async fn set_meta_impl(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.to_string())
        .bind(value.to_string())
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    pub(crate) async fn config_version_impl(&self) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT version FROM config_version WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(backend)
    }

    pub(crate) async fn settings_impl(&self) -> StoreResult<Map<String, Value>> {
        let rows = sqlx::query("SELECT key, value FROM settings")
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        let mut map = Map::new();
        for row in rows {
            let key = text(&row, "key")?;
            let raw = text(&row, "value")?;
            let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            map.insert(key, value);
        }
        Ok(map)
    }

    pub(crate) async fn put_settings_impl(
        &self,
        values: &Map<String, Value>,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        for (key, value) in values {
            sqlx::query(
                "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(key.clone())
            .bind(value.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        bump_version(&mut tx).await?;
        tx.commit().await.map_err(backend)
    }

    pub(crate) async fn config_docs_impl(&self, kind: ConfigKind) -> StoreResult<Vec<ConfigDoc>> {
        let rows = sqlx::query(
            "SELECT name, body, updated_at FROM config_docs WHERE kind = $1 ORDER BY name_lc",
        )
        .bind(kind.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        let mut docs = Vec::with_capacity(rows.len());
        for row in rows {
            let body = text(&row, "body")?;
            docs.push(ConfigDoc {
                kind,
                name: text(&row, "name")?,
                body: serde_json::from_str(&body)
                    .map_err(|e| tessera_core::store::StoreError::Backend(e.to_string()))?,
                updated_at: int(&row, "updated_at")?,
            });
        }
        Ok(docs)
    }

    pub(crate) async fn put_config_doc_impl(
        &self,
        kind: ConfigKind,
        name: &str,
        body: &Value,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO config_docs (kind, name_lc, name, body, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, name_lc) DO UPDATE SET name = excluded.name, body = excluded.body, \
             updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(name.to_lowercase())
        .bind(name.to_string())
        .bind(body.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        bump_version(&mut tx).await?;
        tx.commit().await.map_err(backend)
    }

    pub(crate) async fn delete_config_doc_impl(
        &self,
        kind: ConfigKind,
        name: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let done = sqlx::query("DELETE FROM config_docs WHERE kind = $1 AND name_lc = $2")
            .bind(kind.as_str())
            .bind(name.to_lowercase())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        if done > 0 {
            bump_version(&mut tx).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(done > 0)
    }
}

async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> StoreResult<()> {
    sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(())
}
