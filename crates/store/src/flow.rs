//! Transactions (pending challenges) and lockout counters.

use crate::SqlStore;
use crate::rows::{backend, db_err, int, json, opt_int, text, to_json, uint};
use sqlx::any::AnyRow;
use tessera_core::ids::{AppName, RealmName, Serial, SourceName, TransactionId, UserId, UserRef};
use tessera_core::model::{Transaction, TxStatus};
use tessera_core::store::{FailKind, LockPolicy, LockState, StoreError, StoreResult};

fn tx_from_row(row: &AnyRow) -> StoreResult<Transaction> {
    let id = text(row, "id")?;
    let status = text(row, "status")?;
    Ok(Transaction {
        id: TransactionId::parse(&id)
            .ok_or_else(|| StoreError::Backend(format!("bad transaction id {id}")))?,
        user: UserRef {
            source: SourceName(text(row, "user_source")?),
            id: UserId(text(row, "user_id")?),
        },
        username: text(row, "username")?,
        realm: RealmName(text(row, "realm")?),
        application: AppName(text(row, "application")?),
        next_factor: uint(row, "next_factor")?,
        status: TxStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("bad transaction status {status}")))?,
        serials: json::<Vec<Serial>>(row, "serials_json")?,
        created_at: int(row, "created_at")?,
        expires_at: int(row, "expires_at")?,
    })
}

fn lock_from_row(row: &AnyRow) -> StoreResult<LockState> {
    Ok(LockState {
        password_fails: uint(row, "password_fails")?,
        otp_fails: uint(row, "otp_fails")?,
        first_fail_at: int(row, "first_fail_at")?,
        locked_until: opt_int(row, "locked_until")?,
    })
}

impl SqlStore {
    pub(crate) async fn create_transaction_impl(&self, tx: &Transaction) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO transactions (id, user_source, user_id, username, realm, application, \
             next_factor, status, serials_json, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(tx.id.as_str().to_string())
        .bind(tx.user.source.0.clone())
        .bind(tx.user.id.0.clone())
        .bind(tx.username.clone())
        .bind(tx.realm.0.clone())
        .bind(tx.application.0.clone())
        .bind(i64::from(tx.next_factor))
        .bind(tx.status.as_str())
        .bind(to_json(&tx.serials)?)
        .bind(tx.created_at)
        .bind(tx.expires_at)
        .execute(&self.write)
        .await
        .map_err(db_err("transaction"))?;
        Ok(())
    }

    pub(crate) async fn transaction_impl(
        &self,
        id: &TransactionId,
    ) -> StoreResult<Option<Transaction>> {
        sqlx::query(
            "SELECT id, user_source, user_id, username, realm, application, next_factor, status, \
             serials_json, created_at, expires_at FROM transactions WHERE id = $1",
        )
        .bind(id.as_str().to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?
        .as_ref()
        .map(tx_from_row)
        .transpose()
    }

    pub(crate) async fn advance_transaction_impl(
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
        let n = sqlx::query(
            "UPDATE transactions SET next_factor = $3, serials_json = $4, status = $5 \
             WHERE id = $1 AND next_factor = $2 AND status = 'pending'",
        )
        .bind(id.as_str().to_string())
        .bind(i64::from(from))
        .bind(i64::from(to))
        .bind(to_json(&serials)?)
        .bind(status.as_str())
        .execute(&self.write)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn set_transaction_status_impl(
        &self,
        id: &TransactionId,
        status: TxStatus,
    ) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE transactions SET status = $2 WHERE id = $1")
            .bind(id.as_str().to_string())
            .bind(status.as_str())
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn purge_expired_impl(&self, now: i64) -> StoreResult<u64> {
        let mut total = 0;
        // Keep finished transactions an hour for troubleshooting.
        total += sqlx::query("DELETE FROM transactions WHERE expires_at < $1")
            .bind(now - 3600)
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        total += sqlx::query("DELETE FROM admin_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.write)
            .await
            .map_err(backend)?
            .rows_affected();
        // Counters older than the longest possible interval (30 days) count for nothing.
        total += sqlx::query(
            "DELETE FROM lockouts WHERE first_fail_at < $1 AND (locked_until IS NULL OR locked_until < $2)",
        )
        .bind(now - 31 * 86_400)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(total)
    }

    pub(crate) async fn lock_state_impl(&self, key: &str) -> StoreResult<Option<LockState>> {
        sqlx::query(
            "SELECT password_fails, otp_fails, first_fail_at, locked_until FROM lockouts WHERE key = $1",
        )
        .bind(key.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(backend)?
        .as_ref()
        .map(lock_from_row)
        .transpose()
    }

    pub(crate) async fn record_auth_failure_impl(
        &self,
        key: &str,
        kind: FailKind,
        now: i64,
        p: &LockPolicy,
    ) -> StoreResult<LockState> {
        let (pw, otp) = match kind {
            FailKind::Password => (1i64, 0i64),
            FailKind::Otp => (0, 1),
        };
        // A count starts afresh when its first failure is older than the interval, or when a
        // lock it caused has run out.
        let fresh = "($4 - lockouts.first_fail_at >= $8 OR \
                     (lockouts.locked_until IS NOT NULL AND lockouts.locked_until <= $4))";
        let sql = format!(
            "INSERT INTO lockouts (key, password_fails, otp_fails, first_fail_at, locked_until) \
             VALUES ($1, $2, $3, $4, CASE WHEN $2 >= $5 OR $3 >= $6 THEN $4 + $7 ELSE NULL END) \
             ON CONFLICT (key) DO UPDATE SET \
               password_fails = CASE WHEN {fresh} THEN $2 ELSE lockouts.password_fails + $2 END, \
               otp_fails = CASE WHEN {fresh} THEN $3 ELSE lockouts.otp_fails + $3 END, \
               first_fail_at = CASE WHEN {fresh} THEN $4 ELSE lockouts.first_fail_at END, \
               locked_until = CASE \
                 WHEN (CASE WHEN {fresh} THEN $2 ELSE lockouts.password_fails + $2 END) >= $5 \
                   OR (CASE WHEN {fresh} THEN $3 ELSE lockouts.otp_fails + $3 END) >= $6 \
                 THEN $4 + $7 \
                 WHEN {fresh} THEN NULL \
                 ELSE lockouts.locked_until END \
             RETURNING password_fails, otp_fails, first_fail_at, locked_until"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.to_string())
            .bind(pw)
            .bind(otp)
            .bind(now)
            .bind(i64::from(p.max_password))
            .bind(i64::from(p.max_otp))
            .bind(p.lock_secs)
            .bind(p.interval_secs)
            .fetch_one(&self.write)
            .await
            .map_err(backend)?;
        lock_from_row(&row)
    }

    pub(crate) async fn clear_lock_impl(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM lockouts WHERE key = $1")
            .bind(key.to_string())
            .execute(&self.write)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
