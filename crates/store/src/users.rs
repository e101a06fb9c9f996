//! Local users.

use crate::SqlStore;
use crate::rows::{b, backend, db_err, flag, json, like_pattern, opt_int, opt_text, text, to_json};
use sqlx::any::AnyRow;
use tessera_core::ids::{SourceName, UserId};
use tessera_core::model::{LocalUser, NewLocalUser, User, UserPatch};
use tessera_core::store::{StoreResult, UserFilter};

const COLUMNS: &str = "source, id, username, given_name, surname, email, phone, manager, \
                       groups_json, enabled, expires_at, password_hash, created_at, updated_at";

fn user_from_row(row: &AnyRow) -> StoreResult<LocalUser> {
    Ok(LocalUser {
        user: User {
            source: SourceName(text(row, "source")?),
            id: UserId(text(row, "id")?),
            username: text(row, "username")?,
            given_name: opt_text(row, "given_name")?,
            surname: opt_text(row, "surname")?,
            email: opt_text(row, "email")?,
            phone: opt_text(row, "phone")?,
            manager: opt_text(row, "manager")?,
            groups: json(row, "groups_json")?,
            enabled: flag(row, "enabled")?,
            expires_at: opt_int(row, "expires_at")?,
        },
        password_hash: opt_text(row, "password_hash")?,
        created_at: crate::rows::int(row, "created_at")?,
        updated_at: crate::rows::int(row, "updated_at")?,
    })
}

impl SqlStore {
    pub(crate) async fn create_local_user_impl(
        &self,
        new: &NewLocalUser,
        now: i64,
    ) -> StoreResult<()> {
        let u = &new.user;
        sqlx::query(
            "INSERT INTO local_users (source, id, username, username_lc, given_name, surname, email, \
             phone, manager, groups_json, enabled, expires_at, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
        )
        .bind(u.source.0.clone())
        .bind(u.id.0.clone())
        .bind(u.username.clone())
        .bind(u.username.to_lowercase())
        .bind(u.given_name.clone())
        .bind(u.surname.clone())
        .bind(u.email.clone())
        .bind(u.phone.clone())
        .bind(u.manager.clone())
        .bind(to_json(&u.groups)?)
        .bind(b(u.enabled))
        .bind(u.expires_at)
        .bind(new.password_hash.clone())
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(db_err(&format!("user '{}'", u.username)))?;
        Ok(())
    }

    pub(crate) async fn local_user_by_name_impl(
        &self,
        source: &SourceName,
        username: &str,
    ) -> StoreResult<Option<LocalUser>> {
        let sql =
            format!("SELECT {COLUMNS} FROM local_users WHERE source = $1 AND username_lc = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source.0.clone())
            .bind(username.to_lowercase())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    pub(crate) async fn local_user_by_id_impl(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<Option<LocalUser>> {
        let sql = format!("SELECT {COLUMNS} FROM local_users WHERE source = $1 AND id = $2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source.0.clone())
            .bind(id.0.clone())
            .fetch_optional(&self.read)
            .await
            .map_err(backend)?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    pub(crate) async fn list_local_users_impl(
        &self,
        filter: &UserFilter,
    ) -> StoreResult<Vec<LocalUser>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM local_users \
             WHERE ($1 = '' OR source = $1) \
               AND ($2 = '' OR username_lc LIKE $2 ESCAPE '\\' OR lower(coalesce(email, '')) LIKE $2 ESCAPE '\\' \
                    OR lower(coalesce(given_name, '') || ' ' || coalesce(surname, '')) LIKE $2 ESCAPE '\\') \
             ORDER BY source, username_lc LIMIT $3 OFFSET $4"
        );
        let search = filter
            .search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(like_pattern)
            .unwrap_or_default();
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(
                filter
                    .source
                    .as_ref()
                    .map(|s| s.0.clone())
                    .unwrap_or_default(),
            )
            .bind(search)
            .bind(i64::from(limit))
            .bind(i64::from(filter.offset))
            .fetch_all(&self.read)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from_row).collect()
    }

    pub(crate) async fn count_local_users_impl(
        &self,
        source: Option<&SourceName>,
    ) -> StoreResult<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM local_users WHERE ($1 = '' OR source = $1)")
                .bind(source.map(|s| s.0.clone()).unwrap_or_default())
                .fetch_one(&self.read)
                .await
                .map_err(backend)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn update_local_user_impl(
        &self,
        source: &SourceName,
        id: &UserId,
        patch: &UserPatch,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await.map_err(backend)?;
        let sql = format!("SELECT {COLUMNS} FROM local_users WHERE source = $1 AND id = $2");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source.0.clone())
            .bind(id.0.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
        else {
            return Ok(false);
        };
        let mut current = user_from_row(&row)?;
        patch.apply(&mut current.user);
        if let Some(hash) = &patch.password_hash {
            current.password_hash = hash.clone();
        }
        let u = &current.user;
        sqlx::query(
            "UPDATE local_users SET given_name = $3, surname = $4, email = $5, phone = $6, \
             manager = $7, groups_json = $8, enabled = $9, expires_at = $10, password_hash = $11, \
             updated_at = $12 WHERE source = $1 AND id = $2",
        )
        .bind(source.0.clone())
        .bind(id.0.clone())
        .bind(u.given_name.clone())
        .bind(u.surname.clone())
        .bind(u.email.clone())
        .bind(u.phone.clone())
        .bind(u.manager.clone())
        .bind(to_json(&u.groups)?)
        .bind(b(u.enabled))
        .bind(u.expires_at)
        .bind(current.password_hash.clone())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    pub(crate) async fn delete_local_user_impl(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM local_users WHERE source = $1 AND id = $2")
            .bind(source.0.clone())
            .bind(id.0.clone())
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(n > 0)
    }
}
