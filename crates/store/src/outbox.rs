//! The outbox: messages accepted for delivery, kept until sent (or given up), claimed by one
//! node at a time for each attempt. Bodies (which hold codes and links) are sealed.
//! ([`tessera_core::store::OutboxStore`])

use crate::SqlStore;
use crate::db::{Row, Stmt, params};
use tessera_core::ids::TransactionId;
use tessera_core::model::{AttemptResult, OutboxMessage, OutboxStatus};
use tessera_core::store::{StoreError, StoreResult};
use zeroize::Zeroizing;

const COLUMNS: &str = "id, channel, recipient, legs_sealed, transaction_id, username, status, \
    attempts, next_attempt_at, lease_until, not_after, last_error, sent_by, created_at, updated_at";

fn body_context(id: &str) -> String {
    format!("outbox:{id}")
}

impl SqlStore {
    /// The INSERT of a message; with `guard`, only if that transaction holds that code hash.
    pub(crate) fn outbox_insert_if(
        &self,
        m: &OutboxMessage,
        guard: Option<(&TransactionId, &str)>,
    ) -> StoreResult<Stmt> {
        let legs = Zeroizing::new(
            serde_json::to_vec(&m.legs).map_err(|e| StoreError::Backend(e.to_string()))?,
        );
        let sealed = self.sealer.seal(&legs, &body_context(&m.id));
        let mut params = params![
            m.id.as_str(),
            m.channel().map_or("", |c| c.as_str()),
            m.recipient(),
            sealed,
            m.transaction_id.as_ref().map(|t| t.as_str().to_string()),
            m.username.clone(),
            m.status.as_str(),
            i64::from(m.attempts),
            m.next_attempt_at,
            None::<i64>,
            m.not_after,
            m.last_error.clone(),
            m.sent_by.clone(),
            m.created_at,
            m.updated_at
        ];
        let values = (1..=params.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match guard {
            None => format!("INSERT INTO outbox ({COLUMNS}) VALUES ({values})"),
            Some((tx, hash)) => {
                let n = params.len();
                params.extend(params![tx.as_str(), hash]);
                format!(
                    "INSERT INTO outbox ({COLUMNS}) SELECT {values} WHERE EXISTS \
                     (SELECT 1 FROM transactions WHERE id = ${} AND code_hash = ${})",
                    n + 1,
                    n + 2
                )
            }
        };
        Ok(Stmt::new(sql, params))
    }

    fn outbox_from_row(&self, row: &Row) -> StoreResult<OutboxMessage> {
        let id = row.text("id")?;
        let status = row.text("status")?;
        let legs = self
            .sealer
            .open(&row.blob("legs_sealed")?, &body_context(&id))
            .map_err(|e| StoreError::Unseal(format!("outbox message {id}: {e}")))?;
        Ok(OutboxMessage {
            legs: serde_json::from_slice(&legs)
                .map_err(|e| StoreError::Backend(format!("outbox message {id}: {e}")))?,
            transaction_id: row
                .opt_text("transaction_id")?
                .and_then(|t| TransactionId::parse(&t)),
            username: row.opt_text("username")?,
            status: OutboxStatus::parse(&status)
                .ok_or_else(|| StoreError::Backend(format!("bad outbox status {status}")))?,
            attempts: row.uint("attempts")?,
            next_attempt_at: row.int("next_attempt_at")?,
            not_after: row.int("not_after")?,
            last_error: row.opt_text("last_error")?,
            sent_by: row.opt_text("sent_by")?,
            created_at: row.int("created_at")?,
            updated_at: row.int("updated_at")?,
            id,
        })
    }
}

#[async_trait::async_trait]
impl tessera_core::store::OutboxStore for SqlStore {
    async fn claim_outbox(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let due = self
            .db
            .query(
                "SELECT id, attempts FROM outbox WHERE (status = 'pending' AND next_attempt_at <= $1) \
                 OR (status = 'sending' AND lease_until <= $1) ORDER BY next_attempt_at LIMIT $2",
                params![now, i64::from(limit)],
            )
            .await?;
        let mut claimed = Vec::new();
        for row in due {
            let id = row.text("id")?;
            let attempts = row.int("attempts")?;
            // One caller wins each attempt: the UPDATE holds only while attempts is unchanged.
            let rows = self
                .db
                .write_query(
                    &format!(
                        "UPDATE outbox SET status = 'sending', attempts = attempts + 1, \
                         lease_until = $3, updated_at = $4 WHERE id = $1 AND attempts = $2 \
                         AND ((status = 'pending' AND next_attempt_at <= $4) \
                         OR (status = 'sending' AND lease_until <= $4)) RETURNING {COLUMNS}"
                    ),
                    params![id.as_str(), attempts, lease_until, now],
                    "outbox",
                )
                .await?;
            if let Some(r) = rows.first() {
                match self.outbox_from_row(r) {
                    Ok(m) => claimed.push(m),
                    // A message that cannot be read (sealed under another key, damaged) is
                    // given up rather than blocking the outbox.
                    Err(e) => {
                        tracing::error!(id = %id, error = %e, "outbox message unreadable; given up");
                        self.db
                            .execute(
                                "UPDATE outbox SET status = 'failed', last_error = $2, \
                                 lease_until = NULL, updated_at = $3 WHERE id = $1",
                                params![id.as_str(), format!("unreadable: {e}"), now],
                                "outbox",
                            )
                            .await?;
                    }
                }
            }
        }
        Ok(claimed)
    }
    async fn finish_outbox(
        &self,
        id: &str,
        attempt: u32,
        result: &AttemptResult,
        now: i64,
    ) -> StoreResult<bool> {
        let (status, next, error, by) = match result {
            AttemptResult::Sent { by } => ("sent", now, None, Some(by.clone())),
            AttemptResult::Retry { at, error } => ("pending", *at, Some(error.clone()), None),
            AttemptResult::Failed { error } => ("failed", now, Some(error.clone()), None),
        };
        let n = self
            .db
            .execute(
                "UPDATE outbox SET status = $3, next_attempt_at = $4, \
                 last_error = COALESCE($5, last_error), sent_by = $6, lease_until = NULL, \
                 updated_at = $7 WHERE id = $1 AND attempts = $2 AND status = 'sending'",
                params![id, i64::from(attempt), status, next, error, by, now],
                "outbox",
            )
            .await?;
        Ok(n == 1)
    }
    async fn queue_message(&self, message: &OutboxMessage) -> StoreResult<()> {
        let stmt = self.outbox_insert_if(message, None)?;
        self.db.execute(&stmt.sql, stmt.params, "outbox").await?;
        Ok(())
    }
    async fn list_outbox(&self, all: bool, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
        let filter = if all { "" } else { "WHERE status <> 'sent'" };
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM outbox {filter} ORDER BY created_at DESC, id LIMIT $1"
                ),
                params![i64::from(limit.clamp(1, 10_000))],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| match self.outbox_from_row(r) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox message unreadable; not listed");
                    None
                }
            })
            .collect())
    }
}
