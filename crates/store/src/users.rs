//! Local users and MFA passwords ([`tessera_core::store::UserStore`]).

use crate::SqlStore;
use crate::db::{Row, params};
use tessera_core::ids::{SourceName, UserId};
use tessera_core::model::{LocalUser, NewLocalUser, User, UserPatch};
use tessera_core::store::{StoreError, StoreResult, UserFilter};

const COLUMNS: &str = "source, id, username, given_name, surname, email, phone, manager, \
                       groups_json, enabled, expires_at, password_hash, created_at, updated_at";

pub(crate) fn groups_json(groups: &[String]) -> StoreResult<String> {
    serde_json::to_string(groups).map_err(|e| StoreError::Backend(e.to_string()))
}

fn user_from_row(row: &Row) -> StoreResult<LocalUser> {
    Ok(LocalUser {
        user: User {
            source: SourceName(row.text("source")?),
            id: UserId(row.text("id")?),
            username: row.text("username")?,
            given_name: row.opt_text("given_name")?,
            surname: row.opt_text("surname")?,
            email: row.opt_text("email")?,
            phone: row.opt_text("phone")?,
            manager: row.opt_text("manager")?,
            groups: row.json("groups_json")?,
            enabled: row.flag("enabled")?,
            expires_at: row.opt_int("expires_at")?,
            attributes: Default::default(),
        },
        password_hash: row.opt_text("password_hash")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// A LIKE pattern matching `needle` anywhere, with `\` escaping.
fn like_pattern(needle: &str) -> String {
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

/// `Some(v)` sets a column, `None` leaves it: (flag, value) pairs for `CASE WHEN`.
fn change<T: Clone + Default>(v: &Option<T>) -> (bool, T) {
    (v.is_some(), v.clone().unwrap_or_default())
}

#[async_trait::async_trait]
impl tessera_core::store::UserStore for SqlStore {
    async fn mfa_password(&self, user: &tessera_core::ids::UserRef) -> StoreResult<Option<String>> {
        self.db
            .query_one(
                "SELECT hash FROM mfa_passwords WHERE user_source = $1 AND user_id = $2",
                params![user.source.as_str(), user.id.as_str()],
            )
            .await?
            .map(|r| r.text("hash"))
            .transpose()
    }
    async fn set_mfa_password(
        &self,
        user: &tessera_core::ids::UserRef,
        hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO mfa_passwords (user_source, user_id, hash, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_source, user_id) \
                 DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
                params![user.source.as_str(), user.id.as_str(), hash, now],
                "MFA password",
            )
            .await?;
        Ok(())
    }
    async fn delete_mfa_password(&self, user: &tessera_core::ids::UserRef) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM mfa_passwords WHERE user_source = $1 AND user_id = $2",
                params![user.source.as_str(), user.id.as_str()],
                "MFA password",
            )
            .await?;
        Ok(n > 0)
    }
    async fn create_local_user(&self, new: &NewLocalUser, now: i64) -> StoreResult<()> {
        let u = &new.user;
        self.db
            .execute(
                "INSERT INTO local_users (source, id, username, username_lc, given_name, surname, email, \
                 phone, manager, groups_json, enabled, expires_at, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
                params![
                    &u.source.0,
                    &u.id.0,
                    &u.username,
                    u.username.to_lowercase(),
                    u.given_name.clone(),
                    u.surname.clone(),
                    u.email.clone(),
                    u.phone.clone(),
                    u.manager.clone(),
                    groups_json(&u.groups)?,
                    u.enabled,
                    u.expires_at,
                    new.password_hash.clone(),
                    now
                ],
                &format!("user '{}'", u.username),
            )
            .await?;
        Ok(())
    }
    async fn local_user_by_name(
        &self,
        source: &SourceName,
        username: &str,
    ) -> StoreResult<Option<LocalUser>> {
        let sql =
            format!("SELECT {COLUMNS} FROM local_users WHERE source = $1 AND username_lc = $2");
        self.db
            .query_one(&sql, params![&source.0, username.to_lowercase()])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
    async fn local_user_by_id(
        &self,
        source: &SourceName,
        id: &UserId,
    ) -> StoreResult<Option<LocalUser>> {
        let sql = format!("SELECT {COLUMNS} FROM local_users WHERE source = $1 AND id = $2");
        self.db
            .query_one(&sql, params![&source.0, &id.0])
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }
    async fn list_local_users(&self, filter: &UserFilter) -> StoreResult<Vec<LocalUser>> {
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
        let rows = self
            .db
            .query(
                &sql,
                params![
                    filter
                        .source
                        .as_ref()
                        .map(|s| s.0.clone())
                        .unwrap_or_default(),
                    search,
                    i64::from(limit),
                    i64::from(filter.offset)
                ],
            )
            .await?;
        rows.iter().map(user_from_row).collect()
    }
    async fn count_local_users(&self, source: Option<&SourceName>) -> StoreResult<u64> {
        let row = self
            .db
            .query_one(
                "SELECT COUNT(*) AS n FROM local_users WHERE ($1 = '' OR source = $1)",
                params![source.map(|s| s.0.clone()).unwrap_or_default()],
            )
            .await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0).max(0) as u64)
    }
    async fn update_local_user(
        &self,
        source: &SourceName,
        id: &UserId,
        p: &UserPatch,
        now: i64,
    ) -> StoreResult<bool> {
        // One statement: each column is set only when the patch names it.
        let (gn, gn_v) = change(&p.given_name);
        let (sn, sn_v) = change(&p.surname);
        let (em, em_v) = change(&p.email);
        let (ph, ph_v) = change(&p.phone);
        let (mg, mg_v) = change(&p.manager);
        let (ex, ex_v) = change(&p.expires_at);
        let (pw, pw_v) = change(&p.password_hash);
        let groups = match &p.groups {
            Some(g) => Some(groups_json(g)?),
            None => None,
        };
        let n = self
            .db
            .execute(
                "UPDATE local_users SET \
                   given_name = CASE WHEN $3 = 1 THEN $4 ELSE given_name END, \
                   surname = CASE WHEN $5 = 1 THEN $6 ELSE surname END, \
                   email = CASE WHEN $7 = 1 THEN $8 ELSE email END, \
                   phone = CASE WHEN $9 = 1 THEN $10 ELSE phone END, \
                   manager = CASE WHEN $11 = 1 THEN $12 ELSE manager END, \
                   groups_json = CASE WHEN $13 = 1 THEN $14 ELSE groups_json END, \
                   enabled = CASE WHEN $15 = 1 THEN $16 ELSE enabled END, \
                   expires_at = CASE WHEN $17 = 1 THEN $18 ELSE expires_at END, \
                   password_hash = CASE WHEN $19 = 1 THEN $20 ELSE password_hash END, \
                   updated_at = $21 \
                 WHERE source = $1 AND id = $2",
                params![
                    &source.0,
                    &id.0,
                    gn,
                    gn_v,
                    sn,
                    sn_v,
                    em,
                    em_v,
                    ph,
                    ph_v,
                    mg,
                    mg_v,
                    groups.is_some(),
                    groups.clone().unwrap_or_default(),
                    p.enabled.is_some(),
                    p.enabled.unwrap_or(true),
                    ex,
                    ex_v,
                    pw,
                    pw_v,
                    now
                ],
                "user",
            )
            .await?;
        Ok(n > 0)
    }
    async fn delete_local_user(&self, source: &SourceName, id: &UserId) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM local_users WHERE source = $1 AND id = $2",
                params![&source.0, &id.0],
                "user",
            )
            .await?;
        Ok(n > 0)
    }
}
