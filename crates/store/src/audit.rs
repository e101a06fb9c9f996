//! The audit log, administrators and their sessions.

use crate::SqlStore;
use crate::rows::{b, backend, db_err, flag, int, opt_text, text};
use sqlx::any::AnyRow;
use tessera_core::model::{AdminAccount, AdminRole, AdminSession, AuditQuery, AuditRecord};
use tessera_core::store::{StoreError, StoreResult};

fn audit_from_row(row: &AnyRow) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: int(row, "id")?,
        at_ms: int(row, "at_ms")?,
        actor: text(row, "actor")?,
        action: text(row, "action")?,
        door: text(row, "door")?,
        user: opt_text(row, "user_name")?,
        realm: opt_text(row, "realm")?,
        serial: opt_text(row, "serial")?,
        application: opt_text(row, "application")?,
        transaction_id: opt_text(row, "transaction_id")?,
        client_ip: opt_text(row, "client_ip")?,
        user_agent: opt_text(row, "user_agent")?,
        result: text(row, "result")?,
        reason: text(row, "reason")?,
    })
}

fn role(s: &str) -> StoreResult<AdminRole> {
    AdminRole::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown admin role {s}")))
}

fn admin_from_row(row: &AnyRow) -> StoreResult<AdminAccount> {
    Ok(AdminAccount {
        name: text(row, "name")?,
        password_hash: text(row, "password_hash")?,
        role: role(&text(row, "role")?)?,
        enabled: flag(row, "enabled")?,
        created_at: int(row, "created_at")?,
    })
}

/// Limits user-controlled text in audit columns.
fn clip(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|v| v.chars().take(512).collect())
}

impl SqlStore {
    pub(crate) async fn append_audit_impl(&self, r: &AuditRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, action, door, user_name, realm, serial, application, \
             transaction_id, client_ip, user_agent, result, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(r.at_ms)
        .bind(r.actor.clone())
        .bind(r.action.clone())
        .bind(r.door.clone())
        .bind(clip(&r.user))
        .bind(clip(&r.realm))
        .bind(clip(&r.serial))
        .bind(clip(&r.application))
        .bind(r.transaction_id.clone())
        .bind(r.client_ip.clone())
        .bind(clip(&r.user_agent))
        .bind(r.result.clone())
        .bind(r.reason.chars().take(2000).collect::<String>())
        .execute(&self.write)
        .await
        .map_err(backend)?;
        Ok(())
    }

    pub(crate) async fn query_audit_impl(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 10_000));
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, action, door, user_name, realm, serial, application, \
             transaction_id, client_ip, user_agent, result, reason FROM audit \
             WHERE ($1 = '' OR lower(user_name) = lower($1)) AND ($2 = '' OR serial = $2) \
               AND ($3 = '' OR action = $3) AND ($4 = '' OR result = $4) AND ($5 = '' OR actor = $5) \
               AND at_ms >= $6 AND at_ms <= $7 AND id < $8 \
             ORDER BY id DESC LIMIT $9",
        )
        .bind(q.user.clone().unwrap_or_default())
        .bind(q.serial.clone().unwrap_or_default())
        .bind(q.action.clone().unwrap_or_default())
        .bind(q.result.clone().unwrap_or_default())
        .bind(q.actor.clone().unwrap_or_default())
        .bind(q.since_ms.unwrap_or(0))
        .bind(q.until_ms.unwrap_or(i64::MAX))
        .bind(q.before_id.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(audit_from_row).collect()
    }

    pub(crate) async fn create_admin_impl(&self, a: &AdminAccount) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admins (name, password_hash, role, enabled, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.name.clone())
        .bind(a.password_hash.clone())
        .bind(a.role.as_str())
        .bind(b(a.enabled))
        .bind(a.created_at)
        .execute(&self.write)
        .await
        .map_err(db_err(&format!("administrator '{}'", a.name)))?;
        Ok(())
    }

    pub(crate) async fn admin_impl(&self, name: &str) -> StoreResult<Option<AdminAccount>> {
        sqlx::query(
            "SELECT name, password_hash, role, enabled, created_at FROM admins WHERE name = $1",
        )
        .bind(name.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?
        .as_ref()
        .map(admin_from_row)
        .transpose()
    }

    pub(crate) async fn list_admins_impl(&self) -> StoreResult<Vec<AdminAccount>> {
        let rows = sqlx::query(
            "SELECT name, password_hash, role, enabled, created_at FROM admins ORDER BY name",
        )
        .fetch_all(&self.read)
        .await
        .map_err(backend)?;
        rows.iter().map(admin_from_row).collect()
    }

    pub(crate) async fn update_admin_password_impl(
        &self,
        name: &str,
        hash: &str,
    ) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE admins SET password_hash = $2 WHERE name = $1")
            .bind(name.to_string())
            .bind(hash.to_string())
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn delete_admin_impl(&self, name: &str) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM admins WHERE name = $1")
            .bind(name.to_string())
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(n > 0)
    }

    pub(crate) async fn create_session_impl(&self, s: &AdminSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO admin_sessions (token_hash, admin, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(s.token_hash.clone())
        .bind(s.admin.clone())
        .bind(s.role.as_str())
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.write)
        .await
        .map_err(db_err("session"))?;
        Ok(())
    }

    pub(crate) async fn session_impl(&self, token_hash: &str) -> StoreResult<Option<AdminSession>> {
        let row = sqlx::query(
            "SELECT token_hash, admin, role, created_at, expires_at FROM admin_sessions WHERE token_hash = $1",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AdminSession {
            token_hash: text(&row, "token_hash")?,
            admin: text(&row, "admin")?,
            role: role(&text(&row, "role")?)?,
            created_at: int(&row, "created_at")?,
            expires_at: int(&row, "expires_at")?,
        }))
    }

    pub(crate) async fn delete_session_impl(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = $1")
            .bind(token_hash.to_string())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(crate) async fn delete_sessions_of_impl(&self, admin: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE admin = $1")
            .bind(admin.to_string())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
