//! Tokens: sealed seeds, the single-use OTP counter, fail counters
//! ([`tessera_core::store::TokenStore`]).

use crate::SqlStore;
use crate::db::{Answer, Row, params};
use tessera_core::ids::{Serial, SourceName, UserId, UserRef};
use tessera_core::model::{NewToken, Token, TokenKind, TokenPatch, TokenState};
use tessera_core::store::{StoreError, StoreResult, TokenFilter};
use tessera_otp::{Algorithm, Digits};

const COLUMNS: &str = "serial, kind, owner_source, owner_id, description, seed, algorithm, digits, \
     period, counter, otp_window, sync_window, pin_hash, fail_count, max_fail, fail_exceeded_at, \
     state, resync_counter, resync_at, count_auth, count_auth_success, last_auth, created_at";

/// The associated data that binds a sealed seed to its token.
pub(crate) fn seed_context(serial: &str) -> String {
    format!("token-seed:{serial}")
}

pub(crate) fn state_str(s: TokenState) -> &'static str {
    match s {
        TokenState::Enabled => "enabled",
        TokenState::Disabled => "disabled",
        TokenState::Revoked => "revoked",
    }
}

/// A token at its fail limit whose limit was reached `$3` (failcounter_clear_minutes, when not
/// 0) or more minutes before `$2` (now): its count starts afresh at the next attempt
/// (privacyIDEA let such a token take any number of further wrong OTPs).
const CLEARED: &str = "(fail_count >= max_fail AND $3 > 0 AND fail_exceeded_at IS NOT NULL \
                       AND fail_exceeded_at + $3 * 60 <= $2)";

fn parse_state(s: &str) -> StoreResult<TokenState> {
    match s {
        "enabled" => Ok(TokenState::Enabled),
        "disabled" => Ok(TokenState::Disabled),
        "revoked" => Ok(TokenState::Revoked),
        other => Err(StoreError::Backend(format!("unknown token state {other}"))),
    }
}

impl SqlStore {
    fn token_from_row(&self, row: &Row) -> StoreResult<Token> {
        let serial = row.text("serial")?;
        let sealed = row.blob("seed")?;
        let seed = self
            .sealer
            .open(&sealed, &seed_context(&serial))
            .map_err(|e| StoreError::Unseal(format!("seed of token {serial}: {e}")))?;
        let kind = row.text("kind")?;
        let owner = match (row.opt_text("owner_source")?, row.opt_text("owner_id")?) {
            (Some(s), Some(i)) => Some(UserRef {
                source: SourceName(s),
                id: UserId(i),
            }),
            _ => None,
        };
        let algorithm = row.text("algorithm")?;
        Ok(Token {
            serial: Serial(serial),
            kind: TokenKind::parse(&kind)
                .ok_or_else(|| StoreError::Backend(format!("unknown token kind {kind}")))?,
            owner,
            description: row.text("description")?,
            seed,
            algorithm: Algorithm::parse(&algorithm)
                .ok_or_else(|| StoreError::Backend(format!("unknown algorithm {algorithm}")))?,
            digits: Digits::from_len(u64::from(row.uint("digits")?))
                .ok_or_else(|| StoreError::Backend("bad digits".into()))?,
            period: row.uint("period")?,
            counter: row.int("counter")?,
            window: row.uint("otp_window")?,
            sync_window: row.uint("sync_window")?,
            pin_hash: row.opt_text("pin_hash")?,
            fail_count: row.uint("fail_count")?,
            max_fail: row.uint("max_fail")?,
            fail_exceeded_at: row.opt_int("fail_exceeded_at")?,
            state: parse_state(&row.text("state")?)?,
            resync_counter: row.opt_int("resync_counter")?,
            resync_at: row.opt_int("resync_at")?,
            count_auth: row.int("count_auth")?,
            count_auth_success: row.int("count_auth_success")?,
            last_auth: row.opt_int("last_auth")?,
            created_at: row.int("created_at")?,
        })
    }
}

#[async_trait::async_trait]
impl tessera_core::store::TokenStore for SqlStore {
    async fn insert_token(&self, t: &NewToken) -> StoreResult<()> {
        let sealed = self.sealer.seal(&t.seed, &seed_context(&t.serial.0));
        self.db
            .execute(
                "INSERT INTO tokens (serial, kind, owner_source, owner_id, description, seed, algorithm, \
                 digits, period, counter, otp_window, sync_window, pin_hash, fail_count, max_fail, state, \
                 count_auth, count_auth_success, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $16, $14, $17, 0, 0, $15)",
                params![
                    &t.serial.0,
                    t.kind.as_str(),
                    t.owner.as_ref().map(|o| o.source.0.clone()),
                    t.owner.as_ref().map(|o| o.id.0.clone()),
                    &t.description,
                    sealed,
                    t.algorithm.as_str(),
                    i64::try_from(t.digits.get()).unwrap_or(6),
                    i64::from(t.period),
                    t.counter,
                    i64::from(t.window),
                    i64::from(t.sync_window),
                    t.pin_hash.clone(),
                    i64::from(t.max_fail),
                    t.created_at,
                    i64::from(t.fail_count),
                    state_str(t.state)
                ],
                &format!("token {}", t.serial),
            )
            .await?;
        Ok(())
    }
    async fn token(&self, serial: &Serial) -> StoreResult<Option<Token>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE serial = $1");
        self.db
            .query_one(&sql, params![&serial.0])
            .await?
            .as_ref()
            .map(|r| self.token_from_row(r))
            .transpose()
    }
    async fn tokens_of(&self, owner: &UserRef) -> StoreResult<Vec<Token>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE owner_source = $1 AND owner_id = $2");
        // Sorted here: with ORDER BY, SQLite (STAT4 build) re-prepares the statement on every
        // run, which costs more than the whole lookup.
        let rows = self
            .db
            .query(&sql, params![&owner.source.0, &owner.id.0])
            .await?;
        let mut tokens = rows
            .iter()
            .map(|r| self.token_from_row(r))
            .collect::<StoreResult<Vec<_>>>()?;
        tokens.sort_by(|a, b| a.serial.cmp(&b.serial));
        Ok(tokens)
    }
    async fn list_tokens(&self, f: &TokenFilter) -> StoreResult<Vec<Token>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tokens \
             WHERE ($1 = '' OR (owner_source = $1 AND owner_id = $2)) AND ($3 = '' OR kind = $3) \
             ORDER BY serial LIMIT $4 OFFSET $5"
        );
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = self
            .db
            .query(
                &sql,
                params![
                    f.owner
                        .as_ref()
                        .map(|o| o.source.0.clone())
                        .unwrap_or_default(),
                    f.owner.as_ref().map(|o| o.id.0.clone()).unwrap_or_default(),
                    f.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                    i64::from(limit),
                    i64::from(f.offset)
                ],
            )
            .await?;
        rows.iter().map(|r| self.token_from_row(r)).collect()
    }
    async fn count_tokens(&self) -> StoreResult<u64> {
        let row = self
            .db
            .query_one("SELECT COUNT(*) AS n FROM tokens", vec![])
            .await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0).max(0) as u64)
    }
    async fn update_token(&self, serial: &Serial, p: &TokenPatch) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE tokens SET \
                   description = CASE WHEN $2 = 1 THEN $3 ELSE description END, \
                   state = CASE WHEN $4 = 1 THEN $5 ELSE state END, \
                   pin_hash = CASE WHEN $6 = 1 THEN $7 ELSE pin_hash END, \
                   max_fail = CASE WHEN $8 = 1 THEN $9 ELSE max_fail END, \
                   otp_window = CASE WHEN $10 = 1 THEN $11 ELSE otp_window END, \
                   sync_window = CASE WHEN $12 = 1 THEN $13 ELSE sync_window END, \
                   fail_count = CASE WHEN $14 = 1 THEN 0 ELSE fail_count END, \
                   fail_exceeded_at = CASE WHEN $14 = 1 THEN NULL ELSE fail_exceeded_at END, \
                   counter = CASE WHEN $15 = 1 THEN $16 ELSE counter END, \
                   resync_counter = CASE WHEN $15 = 1 THEN NULL ELSE resync_counter END, \
                   resync_at = CASE WHEN $15 = 1 THEN NULL ELSE resync_at END \
                 WHERE serial = $1 AND ($15 = 0 OR counter <= $16)",
                params![
                    &serial.0,
                    p.description.is_some(),
                    p.description.clone().unwrap_or_default(),
                    p.state.is_some(),
                    state_str(p.state.unwrap_or(TokenState::Enabled)),
                    p.pin_hash.is_some(),
                    p.pin_hash.clone().flatten(),
                    p.max_fail.is_some(),
                    i64::from(p.max_fail.unwrap_or(0)),
                    p.window.is_some(),
                    i64::from(p.window.unwrap_or(0)),
                    p.sync_window.is_some(),
                    i64::from(p.sync_window.unwrap_or(0)),
                    p.reset_failcount,
                    p.counter.is_some(),
                    p.counter.unwrap_or(0)
                ],
                "token",
            )
            .await?;
        Ok(n > 0)
    }
    async fn delete_token(&self, serial: &Serial) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "DELETE FROM tokens WHERE serial = $1",
                params![&serial.0],
                "token",
            )
            .await?;
        Ok(n > 0)
    }
    async fn delete_tokens_of(&self, owner: &UserRef) -> StoreResult<u64> {
        self.db
            .execute(
                "DELETE FROM tokens WHERE owner_source = $1 AND owner_id = $2",
                params![&owner.source.0, &owner.id.0],
                "token",
            )
            .await
    }
    async fn assign_token(&self, serial: &Serial, owner: &UserRef) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE tokens SET owner_source = $2, owner_id = $3 \
                 WHERE serial = $1 AND owner_source IS NULL",
                params![&serial.0, &owner.source.0, &owner.id.0],
                "token",
            )
            .await?;
        Ok(n > 0)
    }
    async fn replace_pin_hash(&self, serial: &Serial, old: &str, new: &str) -> StoreResult<bool> {
        let n = self
            .db
            .execute(
                "UPDATE tokens SET pin_hash = $3 WHERE serial = $1 AND pin_hash = $2",
                params![&serial.0, old, new],
                "token",
            )
            .await?;
        Ok(n > 0)
    }
    async fn reserve_token_attempt(
        &self,
        serial: &Serial,
        now: i64,
        clear_minutes: u32,
        count_auth: bool,
    ) -> StoreResult<bool> {
        let n = self
            .db
            .execute_answered(
                &format!(
                    "UPDATE tokens SET \
                       fail_count = CASE WHEN {CLEARED} THEN 1 ELSE fail_count + 1 END, \
                       fail_exceeded_at = CASE \
                         WHEN {CLEARED} THEN (CASE WHEN max_fail <= 1 THEN $2 ELSE NULL END) \
                         WHEN fail_count + 1 >= max_fail AND fail_exceeded_at IS NULL THEN $2 \
                         ELSE fail_exceeded_at END, \
                       count_auth = count_auth + $4 \
                     WHERE serial = $1 AND state = 'enabled' \
                       AND (fail_count < max_fail OR {CLEARED})"
                ),
                params![&serial.0, now, i64::from(clear_minutes), count_auth],
                "token",
                Answer::Decided,
            )
            .await?;
        Ok(n == 1)
    }
    async fn release_token_attempt(&self, serial: &Serial, count_auth: bool) -> StoreResult<()> {
        self.db
            .execute_answered(
                "UPDATE tokens SET \
                   fail_count = CASE WHEN fail_count > 0 THEN fail_count - 1 ELSE 0 END, \
                   fail_exceeded_at = CASE WHEN fail_count - 1 < max_fail THEN NULL \
                     ELSE fail_exceeded_at END, \
                   count_auth = CASE WHEN count_auth >= $2 THEN count_auth - $2 ELSE 0 END \
                 WHERE serial = $1",
                params![&serial.0, count_auth],
                "token",
                Answer::Decided,
            )
            .await?;
        Ok(())
    }
    async fn accept_otp(
        &self,
        serial: &Serial,
        counter: i64,
        now: i64,
        count_auth: bool,
    ) -> StoreResult<bool> {
        // The caller reserved this attempt (which counted it in count_auth); the token is within
        // its fail limit then, and the limit is never passed.
        let n = self
            .db
            .execute_answered(
                "UPDATE tokens SET counter = $2 + 1, fail_count = 0, fail_exceeded_at = NULL, \
                   resync_counter = NULL, resync_at = NULL, \
                   count_auth_success = count_auth_success + $4, last_auth = $3 \
                 WHERE serial = $1 AND counter <= $2 AND state = 'enabled' \
                   AND fail_count <= max_fail",
                params![&serial.0, counter, now, count_auth],
                "token",
                Answer::Decided,
            )
            .await?;
        Ok(n == 1)
    }
    async fn record_otp_failures(
        &self,
        serials: &[Serial],
        now: i64,
        count_auth: bool,
        clear_minutes: u32,
    ) -> StoreResult<()> {
        for serial in serials {
            self.db
                .execute_answered(
                    &format!(
                        "UPDATE tokens SET \
                           fail_exceeded_at = CASE \
                             WHEN {CLEARED} THEN (CASE WHEN max_fail <= 1 THEN $2 ELSE NULL END) \
                             WHEN fail_count + 1 >= max_fail AND fail_exceeded_at IS NULL THEN $2 \
                             ELSE fail_exceeded_at END, \
                           fail_count = CASE WHEN {CLEARED} THEN 1 \
                             WHEN fail_count < max_fail THEN fail_count + 1 ELSE fail_count END, \
                           count_auth = count_auth + $4 \
                         WHERE serial = $1"
                    ),
                    params![&serial.0, now, i64::from(clear_minutes), count_auth],
                    "token",
                    Answer::Decided,
                )
                .await?;
        }
        Ok(())
    }
    async fn set_resync_state(
        &self,
        serial: &Serial,
        counter: Option<i64>,
        at: Option<i64>,
    ) -> StoreResult<()> {
        self.db
            .execute_answered(
                "UPDATE tokens SET resync_counter = $2, resync_at = $3 WHERE serial = $1",
                params![&serial.0, counter, at],
                "token",
                Answer::Decided,
            )
            .await?;
        Ok(())
    }
}
