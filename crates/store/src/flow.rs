//! Transactions (pending challenges: [`tessera_core::store::FlowStore`]) and lockout counters
//! ([`tessera_core::store::LockStore`]).

use crate::SqlStore;
use crate::db::{Answer, Row, Stmt, Val, params};
use tessera_core::ids::{AppName, RealmName, Serial, SourceName, TransactionId, UserId, UserRef};
use tessera_core::model::{CodeKind, OutboxMessage, SentCode, Transaction, TxStatus};
use tessera_core::store::{
    FailKind, LockKey, LockPolicy, LockState, Reservation, StoreError, StoreResult,
};

fn tx_from_row(row: &Row) -> StoreResult<Transaction> {
    let id = row.text("id")?;
    let status = row.text("status")?;
    Ok(Transaction {
        id: TransactionId::parse(&id)
            .ok_or_else(|| StoreError::Backend(format!("bad transaction id {id}")))?,
        user: UserRef {
            source: SourceName(row.text("user_source")?),
            id: UserId(row.text("user_id")?),
        },
        username: row.text("username")?,
        realm: RealmName(row.text("realm")?),
        application: AppName(row.text("application")?),
        next_factor: row.uint("next_factor")?,
        status: TxStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("bad transaction status {status}")))?,
        serials: row.json::<Vec<Serial>>("serials_json")?,
        code: match (
            row.opt_text("code_hash")?,
            row.opt_text("code_kind")?.and_then(|k| CodeKind::parse(&k)),
        ) {
            (Some(hash), Some(kind)) => Some(SentCode {
                hash,
                kind,
                factor: u32::try_from(row.opt_int("code_factor")?.unwrap_or(-1))
                    .unwrap_or(u32::MAX),
                fails: row.uint("code_fails")?,
                expires_at: row.opt_int("code_expires_at")?.unwrap_or(0),
            }),
            _ => None,
        },
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        origin: match row.opt_text("origin")? {
            Some(json) => Some(
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Backend(format!("transaction origin: {e}")))?,
            ),
            None => None,
        },
    })
}

fn lock_from_row(row: &Row) -> StoreResult<LockState> {
    Ok(LockState {
        password_fails: row.uint("password_fails")?,
        otp_fails: row.uint("otp_fails")?,
        first_fail_at: row.int("first_fail_at")?,
        locked_until: row.opt_int("locked_until")?,
    })
}

fn serials_json(serials: &[Serial]) -> StoreResult<String> {
    serde_json::to_string(serials).map_err(|e| StoreError::Backend(e.to_string()))
}

/// The (password, OTP) counts of one attempt of `kind`.
fn counts(kind: FailKind) -> (i64, i64) {
    match kind {
        FailKind::Password => (1, 0),
        FailKind::Otp => (0, 1),
    }
}

#[async_trait::async_trait]
impl tessera_core::store::FlowStore for SqlStore {
    async fn create_transaction(
        &self,
        tx: &Transaction,
        message: Option<&OutboxMessage>,
    ) -> StoreResult<()> {
        let insert = Stmt::new(
            "INSERT INTO transactions (id, user_source, user_id, username, realm, application, \
             next_factor, status, serials_json, code_hash, code_fails, code_expires_at, \
             code_kind, code_factor, created_at, expires_at, origin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            params![
                tx.id.as_str(),
                &tx.user.source.0,
                &tx.user.id.0,
                &tx.username,
                &tx.realm.0,
                &tx.application.0,
                i64::from(tx.next_factor),
                tx.status.as_str(),
                serials_json(&tx.serials)?,
                tx.code.as_ref().map(|c| c.hash.clone()),
                tx.code.as_ref().map_or(0, |c| i64::from(c.fails)),
                tx.code.as_ref().map(|c| c.expires_at),
                tx.code.as_ref().map(|c| c.kind.as_str()),
                tx.code.as_ref().map(|c| i64::from(c.factor)),
                tx.created_at,
                tx.expires_at,
                tx.origin
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| StoreError::Backend(e.to_string()))?
            ],
        );
        match message {
            None => {
                self.db
                    .execute(&insert.sql, insert.params, "transaction")
                    .await?;
            }
            Some(m) => {
                self.db
                    .transaction(vec![insert, self.outbox_insert_if(m, None)?], "transaction")
                    .await?;
            }
        }
        Ok(())
    }
    async fn advance_with_code(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        code: &SentCode,
        message: &OutboxMessage,
    ) -> StoreResult<bool> {
        let moved = Stmt::new(
            "UPDATE transactions SET next_factor = $3, serials_json = $6, code_hash = $4, \
             code_fails = 0, code_expires_at = $5, code_kind = $7, code_factor = $3, \
             expires_at = CASE WHEN expires_at < $5 THEN $5 ELSE expires_at END, \
             status = 'pending' WHERE id = $1 AND next_factor = $2 \
             AND status IN ('pending', 'answered')",
            params![
                id.as_str(),
                i64::from(from),
                i64::from(to),
                code.hash.as_str(),
                code.expires_at,
                serials_json(serials)?,
                code.kind.as_str()
            ],
        );
        // The message goes with the move only: it is queued when the transaction holds this
        // request's code afterwards, i.e. when this request moved it (a concurrent request
        // that lost the move made another random code).
        let queue = self.outbox_insert_if(message, Some((id, code.hash.as_str())))?;
        let counts = self
            .db
            .transaction(vec![moved, queue], "transaction")
            .await?;
        Ok(counts.first() == Some(&1))
    }
    async fn reserve_code_attempt(
        &self,
        id: &TransactionId,
        factor: u32,
        max: u32,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let rows = self
            .db
            .write_query(
                "UPDATE transactions SET code_fails = code_fails + 1 WHERE id = $1 \
                 AND code_kind = 'code' AND code_factor = $2 AND next_factor = $2 \
                 AND status = 'pending' AND code_fails < $3 AND code_expires_at > $4 \
                 RETURNING code_hash",
                params![id.as_str(), i64::from(factor), i64::from(max), now],
                "transaction",
            )
            .await?;
        rows.first().map(|r| r.text("code_hash")).transpose()
    }
    async fn consume_code(&self, id: &TransactionId, hash: &str) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE transactions SET code_hash = NULL, code_kind = NULL, code_factor = NULL \
                 WHERE id = $1 AND code_hash = $2",
                params![id.as_str(), hash],
                "transaction",
            )
            .await?;
        Ok(n == 1)
    }
    async fn answer_link(
        &self,
        id: &TransactionId,
        hash: &str,
        status: TxStatus,
        now: i64,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE transactions SET status = $3 WHERE id = $1 AND status = 'pending' \
                 AND code_kind = 'link' AND code_hash = $2 AND code_factor = next_factor \
                 AND code_expires_at > $4 AND expires_at > $4",
                params![id.as_str(), hash, status.as_str(), now],
                "transaction",
            )
            .await?;
        Ok(n == 1)
    }
    async fn transaction(&self, id: &TransactionId) -> StoreResult<Option<Transaction>> {
        self.db
            .query_one(
                "SELECT id, user_source, user_id, username, realm, application, next_factor, status, \
                 serials_json, code_hash, code_fails, code_expires_at, code_kind, code_factor, \
                 created_at, expires_at, origin FROM transactions WHERE id = $1",
                params![id.as_str()],
            )
            .await?
            .as_ref()
            .map(tx_from_row)
            .transpose()
    }
    async fn advance_transaction(
        &self,
        id: &TransactionId,
        from: u32,
        to: u32,
        serials: &[Serial],
        complete: bool,
    ) -> StoreResult<bool> {
        let status = if complete {
            TxStatus::Completed
        } else {
            TxStatus::Pending
        };
        let n = self
            .db
            .execute(
                "UPDATE transactions SET next_factor = $3, serials_json = $4, status = $5, \
                 code_hash = NULL, code_kind = NULL, code_factor = NULL, code_fails = 0, \
                 code_expires_at = NULL \
                 WHERE id = $1 AND next_factor = $2 AND status IN ('pending', 'answered')",
                params![
                    id.as_str(),
                    i64::from(from),
                    i64::from(to),
                    serials_json(serials)?,
                    status.as_str()
                ],
                "transaction",
            )
            .await?;
        Ok(n == 1)
    }
    async fn set_transaction_status(
        &self,
        id: &TransactionId,
        status: TxStatus,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE transactions SET status = $2 WHERE id = $1 AND status = 'pending'",
                params![id.as_str(), status.as_str()],
                "transaction",
            )
            .await?;
        Ok(n == 1)
    }
}

#[async_trait::async_trait]
impl tessera_core::store::LockStore for SqlStore {
    async fn lock_state(&self, key: &LockKey) -> StoreResult<Option<LockState>> {
        self.db
            .query_one(
                "SELECT password_fails, otp_fails, first_fail_at, locked_until FROM lockouts WHERE key = $1",
                params![key.stored()],
            )
            .await?
            .as_ref()
            .map(lock_from_row)
            .transpose()
    }
    async fn reserve_attempt(
        &self,
        key: &LockKey,
        kind: FailKind,
        now: i64,
        p: &LockPolicy,
    ) -> StoreResult<Option<LockState>> {
        let (pw, otp) = counts(kind);
        // A count starts afresh when the lock it caused has run out, or, while it locks nothing,
        // when it is empty (every attempt was given back) or its first failure is older than
        // the interval. Otherwise an attempt is taken only while the key is not locked; the one
        // that uses up a budget locks it (the counts never pass a budget: a full budget is a
        // lock, for all of `lock_secs` whatever the interval).
        let fresh = "((lockouts.locked_until IS NOT NULL AND lockouts.locked_until <= $4) OR \
                     (lockouts.locked_until IS NULL AND \
                      ((lockouts.password_fails = 0 AND lockouts.otp_fails = 0) OR \
                       $4 - lockouts.first_fail_at >= $8)))";
        let pw_after = format!("(CASE WHEN {fresh} THEN $2 ELSE lockouts.password_fails + $2 END)");
        let otp_after = format!("(CASE WHEN {fresh} THEN $3 ELSE lockouts.otp_fails + $3 END)");
        let sql = format!(
            "INSERT INTO lockouts (key, password_fails, otp_fails, first_fail_at, locked_until) \
             VALUES ($1, $2, $3, $4, CASE WHEN $2 >= $5 OR $3 >= $6 THEN $4 + $7 ELSE NULL END) \
             ON CONFLICT (key) DO UPDATE SET \
               password_fails = {pw_after}, \
               otp_fails = {otp_after}, \
               first_fail_at = CASE WHEN {fresh} THEN $4 ELSE lockouts.first_fail_at END, \
               locked_until = CASE WHEN {pw_after} >= $5 OR {otp_after} >= $6 THEN $4 + $7 \
                 ELSE NULL END \
             WHERE {fresh} OR lockouts.locked_until IS NULL \
             RETURNING password_fails, otp_fails, first_fail_at, locked_until"
        );
        let rows = self
            .db
            .write_query_answered(
                &sql,
                params![
                    key.stored(),
                    pw,
                    otp,
                    now,
                    i64::from(p.max_password),
                    i64::from(p.max_otp),
                    p.lock_secs,
                    p.interval_secs
                ],
                "lockout",
                Answer::Decided,
            )
            .await?;
        rows.first().map(lock_from_row).transpose()
    }
    async fn release_attempt(&self, r: &Reservation) -> StoreResult<()> {
        let (pw, otp) = counts(r.kind);
        // Old values on the right-hand side (both backends). A count that goes back to nothing
        // starts afresh at its next failure (see `reserve_attempt`); one that started
        // afresh (or was cleared and begun again) after the attempt was taken does not hold it:
        // the count the attempt went into is the one whose start it saw.
        self.db
            .execute_answered(
                "UPDATE lockouts SET \
                   password_fails = CASE WHEN password_fails >= $2 THEN password_fails - $2 ELSE 0 END, \
                   otp_fails = CASE WHEN otp_fails >= $3 THEN otp_fails - $3 ELSE 0 END, \
                   locked_until = CASE WHEN password_fails - $2 >= $5 OR otp_fails - $3 >= $6 \
                     THEN locked_until ELSE NULL END \
                 WHERE key = $1 AND first_fail_at = $4",
                params![
                    r.key.stored(),
                    pw,
                    otp,
                    r.since,
                    i64::from(r.policy.max_password),
                    i64::from(r.policy.max_otp)
                ],
                "lockout",
                Answer::Decided,
            )
            .await?;
        Ok(())
    }
    async fn clear_locks(&self, keys: &[LockKey]) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        self.db
            .execute_answered(
                &format!(
                    "DELETE FROM lockouts WHERE key IN ({})",
                    placeholders.join(", ")
                ),
                keys.iter().map(|k| Val::from(k.stored())).collect(),
                "lockout",
                Answer::Decided,
            )
            .await?;
        Ok(())
    }
    async fn clear_locks_with_prefix(&self, prefix: &str) -> StoreResult<u64> {
        self.db
            .execute(
                "DELETE FROM lockouts WHERE substr(key, 1, CAST($1 AS INTEGER)) = $2",
                params![prefix.chars().count() as i64, prefix],
                "lockout",
            )
            .await
    }
    async fn locks_with_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, LockState)>> {
        let rows = self
            .db
            .query(
                "SELECT key, password_fails, otp_fails, first_fail_at, locked_until FROM lockouts \
                 WHERE substr(key, 1, CAST($1 AS INTEGER)) = $2 ORDER BY key LIMIT $3",
                params![prefix.chars().count() as i64, prefix, i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("key")?, lock_from_row(r)?)))
            .collect()
    }
}
