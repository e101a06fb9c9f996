//! Bulk provisioning (the benchmark's 1M users and tokens, imports): multi-row inserts in one
//! transaction per batch.

use crate::SqlStore;
use crate::db::{Stmt, Val};
use crate::tokens::seed_context;
use crate::users::groups_json;
use tessera_core::model::{NewLocalUser, NewToken};
use tessera_core::store::StoreResult;

/// Rows per statement: well below SQLite's limit of 32766 bound parameters.
const ROWS: usize = 500;

fn placeholders(rows: usize, cols: usize) -> String {
    let mut s = String::new();
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("${}", r * cols + c + 1));
        }
        s.push(')');
    }
    s
}

impl SqlStore {
    /// Inserts local users and tokens (seeds sealed) in one transaction.
    pub async fn bulk_insert(
        &self,
        users: &[NewLocalUser],
        tokens: &[NewToken],
        now: i64,
    ) -> StoreResult<()> {
        let mut stmts = Vec::new();
        for chunk in users.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO local_users (source, id, username, username_lc, given_name, surname, email, \
                 phone, manager, groups_json, enabled, expires_at, password_hash, created_at, updated_at) VALUES {}",
                placeholders(chunk.len(), 15)
            );
            let mut params: Vec<Val> = Vec::with_capacity(chunk.len() * 15);
            for n in chunk {
                let u = &n.user;
                params.extend([
                    Val::from(&u.source.0),
                    Val::from(&u.id.0),
                    Val::from(&u.username),
                    Val::from(u.username.to_lowercase()),
                    Val::from(u.given_name.clone()),
                    Val::from(u.surname.clone()),
                    Val::from(u.email.clone()),
                    Val::from(u.phone.clone()),
                    Val::from(u.manager.clone()),
                    Val::from(groups_json(&u.groups)?),
                    Val::from(u.enabled),
                    Val::from(u.expires_at),
                    Val::from(n.password_hash.clone()),
                    Val::from(now),
                    Val::from(now),
                ]);
            }
            stmts.push(Stmt::new(sql, params));
        }
        for chunk in tokens.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO tokens (serial, kind, owner_source, owner_id, description, seed, algorithm, \
                 digits, period, counter, otp_window, sync_window, pin_hash, max_fail, state, created_at) VALUES {}",
                placeholders(chunk.len(), 16)
            );
            let mut params: Vec<Val> = Vec::with_capacity(chunk.len() * 16);
            for t in chunk {
                params.extend([
                    Val::from(&t.serial.0),
                    Val::from(t.kind.as_str()),
                    Val::from(t.owner.as_ref().map(|o| o.source.0.clone())),
                    Val::from(t.owner.as_ref().map(|o| o.id.0.clone())),
                    Val::from(&t.description),
                    Val::from(self.sealer.seal(&t.seed, &seed_context(&t.serial.0))),
                    Val::from(t.algorithm.as_str()),
                    Val::from(i64::try_from(t.digits.get()).unwrap_or(6)),
                    Val::from(i64::from(t.period)),
                    Val::from(t.counter),
                    Val::from(i64::from(t.window)),
                    Val::from(i64::from(t.sync_window)),
                    Val::from(t.pin_hash.clone()),
                    Val::from(i64::from(t.max_fail)),
                    Val::from("enabled"),
                    Val::from(t.created_at),
                ]);
            }
            stmts.push(Stmt::new(sql, params));
        }
        self.db.transaction(stmts, "bulk insert").await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(super::placeholders(2, 2), "($1, $2), ($3, $4)");
    }
}
