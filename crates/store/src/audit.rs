//! The audit log ([`tessera_core::store::AuditStore`]), administrators and their sessions
//! ([`tessera_core::store::AdminStore`]).

use crate::SqlStore;
use crate::db::{Db, Row, Stmt, params};
use tessera_core::model::{AdminAccount, AdminRole, AdminSession, AuditQuery, AuditRecord};
use tessera_core::store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

fn audit_from_row(row: &Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        id: row.int("id")?,
        at_ms: row.int("at_ms")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        door: row.text("door")?,
        user: row.opt_text("user_name")?,
        realm: row.opt_text("realm")?,
        serial: row.opt_text("serial")?,
        application: row.opt_text("application")?,
        transaction_id: row.opt_text("transaction_id")?,
        client_ip: row.opt_text("client_ip")?,
        user_agent: row.opt_text("user_agent")?,
        result: row.text("result")?,
        reason: row.text("reason")?,
    })
}

fn role(s: &str) -> StoreResult<AdminRole> {
    AdminRole::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown admin role {s}")))
}

fn admin_from_row(row: &Row) -> StoreResult<AdminAccount> {
    Ok(AdminAccount {
        name: row.text("name")?,
        password_hash: row.text("password_hash")?,
        role: role(&row.text("role")?)?,
        enabled: row.flag("enabled")?,
        created_at: row.int("created_at")?,
    })
}

/// Limits user-controlled text in audit columns.
fn clip(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|v| v.chars().take(512).collect())
}

fn insert(r: &AuditRecord) -> Stmt {
    Stmt::new(
        "INSERT INTO audit (at_ms, actor, action, door, user_name, realm, serial, application, \
         transaction_id, client_ip, user_agent, result, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        params![
            r.at_ms,
            &r.actor,
            &r.action,
            &r.door,
            clip(&r.user),
            clip(&r.realm),
            clip(&r.serial),
            clip(&r.application),
            r.transaction_id.clone(),
            r.client_ip.clone(),
            clip(&r.user_agent),
            &r.result,
            r.reason.chars().take(2000).collect::<String>()
        ],
    )
}

type Pending = (AuditRecord, oneshot::Sender<Result<(), String>>);

/// Writes audit records with group commit: the records queued while one write is under way go
/// together in the next transaction. Each caller returns only after its record is committed, so
/// nothing acknowledged is lost; under load, many records share one commit. (PostgreSQL only:
/// SQLite's writer thread commits in groups itself, so records go straight to it.)
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    queue: mpsc::Sender<Pending>,
}

/// Records written in one transaction at most.
const BATCH: usize = 256;

impl AuditSink {
    pub(crate) fn start(db: Db) -> AuditSink {
        let (queue, mut rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let stmts = batch.iter().map(|(r, _)| insert(r)).collect();
                let result = db
                    .transaction(stmts, "audit record")
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                for (_, ack) in batch {
                    let _ = ack.send(result.clone());
                }
            }
        });
        AuditSink { queue }
    }

    async fn append(&self, record: AuditRecord) -> StoreResult<()> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send((record, ack))
            .await
            .map_err(|_| StoreError::Backend("the audit writer has stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Backend(e)),
            Err(_) => Err(StoreError::Backend("the audit writer has stopped".into())),
        }
    }
}

#[async_trait::async_trait]
impl tessera_core::store::AuditStore for SqlStore {
    async fn append_audit(&self, r: &AuditRecord) -> StoreResult<()> {
        match &self.audit {
            Some(sink) => sink.append(r.clone()).await?,
            None => {
                let Stmt { sql, params } = insert(r);
                self.db.execute(&sql, params, "audit record").await?;
            }
        }
        if let Some(tap) = self.tap.get() {
            (tap.0)(r);
        }
        Ok(())
    }
    async fn query_audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::from(q.limit.unwrap_or(100).clamp(1, 10_000));
        let rows = self
            .db
            .query(
                "SELECT id, at_ms, actor, action, door, user_name, realm, serial, application, \
                 transaction_id, client_ip, user_agent, result, reason FROM audit \
                 WHERE ($1 = '' OR lower(user_name) = lower($1)) AND ($2 = '' OR serial = $2) \
                   AND ($3 = '' OR action = $3) AND ($4 = '' OR result = $4) AND ($5 = '' OR actor = $5) \
                   AND at_ms >= $6 AND at_ms <= $7 AND id < $8 \
                 ORDER BY id DESC LIMIT $9",
                params![
                    q.user.clone().unwrap_or_default(),
                    q.serial.clone().unwrap_or_default(),
                    q.action.clone().unwrap_or_default(),
                    q.result.clone().unwrap_or_default(),
                    q.actor.clone().unwrap_or_default(),
                    q.since_ms.unwrap_or(0),
                    q.until_ms.unwrap_or(i64::MAX),
                    q.before_id.unwrap_or(i64::MAX),
                    limit
                ],
            )
            .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

#[async_trait::async_trait]
impl tessera_core::store::AdminStore for SqlStore {
    async fn create_admin(&self, a: &AdminAccount) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO admins (name, password_hash, role, enabled, created_at) VALUES ($1, $2, $3, $4, $5)",
                params![&a.name, &a.password_hash, a.role.as_str(), a.enabled, a.created_at],
                &format!("administrator '{}'", a.name),
            )
            .await?;
        Ok(())
    }
    async fn admin(&self, name: &str) -> StoreResult<Option<AdminAccount>> {
        self.db
            .query_one(
                "SELECT name, password_hash, role, enabled, created_at FROM admins WHERE name = $1",
                params![name],
            )
            .await?
            .as_ref()
            .map(admin_from_row)
            .transpose()
    }
    async fn list_admins(&self) -> StoreResult<Vec<AdminAccount>> {
        let rows = self
            .db
            .query(
                "SELECT name, password_hash, role, enabled, created_at FROM admins ORDER BY name",
                vec![],
            )
            .await?;
        rows.iter().map(admin_from_row).collect()
    }
    async fn update_admin_password(&self, name: &str, hash: &str) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE admins SET password_hash = $2 WHERE name = $1",
                params![name, hash],
                "administrator",
            )
            .await?;
        Ok(n > 0)
    }
    async fn delete_admin(&self, name: &str) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM admins WHERE name = $1",
                params![name],
                "administrator",
            )
            .await?;
        Ok(n > 0)
    }
    async fn create_session(&self, s: &AdminSession) -> StoreResult<()> {
        self.db
            .execute(
                "INSERT INTO admin_sessions (token_hash, admin, role, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                params![
                    &s.token_hash,
                    &s.admin,
                    s.role.as_str(),
                    s.created_at,
                    s.expires_at
                ],
                "session",
            )
            .await?;
        Ok(())
    }
    async fn session(&self, token_hash: &str) -> StoreResult<Option<AdminSession>> {
        let Some(row) = self
            .db
            .query_one(
                "SELECT token_hash, admin, role, created_at, expires_at FROM admin_sessions WHERE token_hash = $1",
                params![token_hash],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(AdminSession {
            token_hash: row.text("token_hash")?,
            admin: row.text("admin")?,
            role: role(&row.text("role")?)?,
            created_at: row.int("created_at")?,
            expires_at: row.int("expires_at")?,
        }))
    }
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.db
            .execute(
                "DELETE FROM admin_sessions WHERE token_hash = $1",
                params![token_hash],
                "session",
            )
            .await?;
        Ok(())
    }
    async fn delete_sessions_of(&self, admin: &str) -> StoreResult<()> {
        self.db
            .execute(
                "DELETE FROM admin_sessions WHERE admin = $1",
                params![admin],
                "session",
            )
            .await?;
        Ok(())
    }
}
