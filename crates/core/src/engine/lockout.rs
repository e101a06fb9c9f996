//! Lockout within a login: the budgets an answer counts against, taken before it is checked
//! and given back when it was right (see [`crate::lockout`]).

use super::flow::Login;
use super::{Door, Engine, EngineError, Outcome, RejectReason, Rejected};
use crate::lockout::{FailKind, LockKey, LockPolicy, Reservation};
use crate::model::Transaction;
use crate::settings::SystemSettings;

/// The account budgets of `login` in `realm` for an answer to factor `k` from `address`:
/// the keys and what each allows. Empty when locking is off for that factor.
pub(crate) fn account_budgets(
    settings: &SystemSettings,
    realm: &str,
    login: &str,
    k: u32,
    address: Option<std::net::IpAddr>,
) -> Vec<(LockKey, LockPolicy)> {
    let interval_secs = i64::from(settings.incorrect_attempt_interval_minutes) * 60;
    if k >= 1 && settings.mfa_account_locking {
        return vec![(
            LockKey::mfa(realm, login),
            LockPolicy {
                max_password: settings.mfa_max_password_attempts,
                max_otp: settings.mfa_max_otp_attempts,
                lock_secs: i64::from(settings.mfa_lock_period_minutes) * 60,
                interval_secs,
            },
        )];
    }
    if !settings.account_locking {
        return Vec::new();
    }
    let policy = LockPolicy {
        max_password: settings.max_password_attempts,
        max_otp: settings.max_otp_attempts,
        lock_secs: i64::from(settings.lock_period_minutes) * 60,
        interval_secs,
    };
    if !settings.lock_per_client_address {
        return vec![(LockKey::account(realm, login), policy)];
    }
    // One address uses up its own budgets; the account as a whole locks only after the larger
    // budget shared by every address.
    let all = settings.lock_all_addresses_attempts;
    vec![
        (LockKey::account_from(realm, login, address), policy),
        (
            LockKey::account(realm, login),
            LockPolicy {
                max_password: all,
                max_otp: all,
                ..policy
            },
        ),
    ]
}

/// The budgets of an administrator's sign-ins from `address` (the account lock's settings).
pub(crate) fn admin_budgets(
    settings: &SystemSettings,
    name: &str,
    address: Option<std::net::IpAddr>,
) -> Vec<(LockKey, LockPolicy)> {
    account_budgets(settings, "", name, 0, address)
        .into_iter()
        .map(|(key, policy)| {
            let key = match key {
                LockKey::Account { address: None, .. } => LockKey::admin(name),
                _ => LockKey::admin_from(name, address),
            };
            (key, policy)
        })
        .collect()
}

/// Whether a door's sessions have retry budgets of their own (seed 003's, for the OAuth API
/// and the login pages). RADIUS and the validate API answer challenges as privacyIDEA does:
/// the token's fail counter and the account lock limit them, with no extra write per answer.
fn counts_session_tries(door: Door) -> bool {
    matches!(door, Door::Api | Door::Web)
}

/// The budget of a login session's answers to factor `k`.
fn session_budget(settings: &SystemSettings, tx: &Transaction, k: u32) -> (LockKey, LockPolicy) {
    let (max_password, max_otp) = match k >= 1 {
        true => (
            settings.mfa_max_password_attempts,
            settings.mfa_max_otp_attempts,
        ),
        false => (settings.max_password_attempts, settings.max_otp_attempts),
    };
    // Counted for as long as any session lives.
    let whole_session = (tx.expires_at - tx.created_at).max(0) + 86_400;
    (
        LockKey::session(tx.id.as_str(), k),
        LockPolicy {
            max_password,
            max_otp,
            lock_secs: whole_session,
            interval_secs: whole_session,
        },
    )
}

impl Engine {
    /// The budgets an answer to factor `k` of the login's account counts against: the
    /// account's (or its MFA step's), and the session's for doors that count them.
    fn budgets(
        &self,
        l: &Login<'_>,
        k: u32,
        tx: Option<&Transaction>,
    ) -> Vec<(LockKey, LockPolicy, RejectReason)> {
        let settings = &l.snap.settings;
        // The session's budget (the smaller one) first: answers beyond it take nothing from
        // the account's.
        let mut budgets = Vec::new();
        if let Some(tx) = tx
            && counts_session_tries(l.ctx.door)
        {
            let (key, policy) = session_budget(settings, tx, k);
            budgets.push((key, policy, RejectReason::SessionRetries));
        }
        if let Some((realm, login)) = &l.account {
            budgets.extend(
                account_budgets(settings, realm, login, k, l.ctx.client_ip)
                    .into_iter()
                    .map(|(key, policy)| (key, policy, RejectReason::Locked)),
            );
        }
        budgets
    }

    /// Takes one attempt of `kind` from every budget an answer to factor `k` counts against,
    /// before the answer is checked. When one is used up, gives back what it took and returns
    /// the refusal. For factors after the first with MFA locking on, the account's own lock
    /// refuses too (it is not counted against).
    pub(crate) async fn reserve_attempt(
        &self,
        l: &mut Login<'_>,
        k: u32,
        kind: FailKind,
        tx: Option<&Transaction>,
    ) -> Result<Option<Outcome>, EngineError> {
        if k >= 1
            && l.snap.settings.mfa_account_locking
            && let Some(outcome) = self.primary_locked(l).await?
        {
            return Ok(Some(outcome));
        }
        for (key, policy, refusal) in self.budgets(l, k, tx) {
            match self.reserve_one(key, kind, l.now, policy).await? {
                Some(r) => {
                    if l.attempt.is_none() {
                        l.attempt = Some((r.attempt, policy.max(kind)));
                    }
                    l.held.push(r);
                }
                None => {
                    self.give_back(l).await?;
                    return Ok(Some(reject(refusal)));
                }
            }
        }
        Ok(None)
    }

    /// Takes one attempt of `kind` from one budget: the reservation, or `None` when the key is
    /// locked.
    async fn reserve_one(
        &self,
        key: LockKey,
        kind: FailKind,
        now: i64,
        policy: LockPolicy,
    ) -> Result<Option<Reservation>, crate::store::StoreError> {
        Ok(self
            .ports
            .store
            .reserve_attempt(&key, kind, now, &policy)
            .await?
            .map(|state| Reservation {
                attempt: state.fails(kind),
                since: state.first_fail_at,
                key,
                kind,
                policy,
            }))
    }

    /// Takes one attempt of `kind` from each of `budgets` (outside a login: an administrator's
    /// sign-in, a password change). `None` when one is locked; what was taken is given back then.
    pub(crate) async fn reserve_all(
        &self,
        budgets: Vec<(LockKey, LockPolicy)>,
        kind: FailKind,
        now: i64,
    ) -> Result<Option<Vec<Reservation>>, crate::store::StoreError> {
        let mut held = Vec::with_capacity(budgets.len());
        for (key, policy) in budgets {
            match self.reserve_one(key, kind, now, policy).await? {
                Some(r) => held.push(r),
                None => {
                    self.release_all(&held).await?;
                    return Ok(None);
                }
            }
        }
        Ok(Some(held))
    }

    /// Gives back attempts that were right.
    pub(crate) async fn release_all(
        &self,
        held: &[Reservation],
    ) -> Result<(), crate::store::StoreError> {
        for r in held {
            self.ports.store.release_attempt(r).await?;
        }
        Ok(())
    }

    /// Refuses an answer to factor `k` when one of its budgets is locked, without counting it
    /// (polls of a link, requests that only send a code).
    pub(crate) async fn check_locked(
        &self,
        l: &Login<'_>,
        k: u32,
        tx: Option<&Transaction>,
    ) -> Result<Option<Outcome>, EngineError> {
        if k >= 1
            && l.snap.settings.mfa_account_locking
            && let Some(outcome) = self.primary_locked(l).await?
        {
            return Ok(Some(outcome));
        }
        for (key, _, refusal) in self.budgets(l, k, tx) {
            if let Some(state) = self.ports.store.lock_state(&key).await?
                && state.is_locked(l.now)
            {
                return Ok(Some(reject(refusal)));
            }
        }
        Ok(None)
    }

    /// The account's first-factor lock, refusing the MFA step of a locked account.
    async fn primary_locked(&self, l: &Login<'_>) -> Result<Option<Outcome>, EngineError> {
        let Some((realm, login)) = &l.account else {
            return Ok(None);
        };
        for (key, _) in account_budgets(&l.snap.settings, realm, login, 0, l.ctx.client_ip) {
            if let Some(state) = self.ports.store.lock_state(&key).await?
                && state.is_locked(l.now)
            {
                return Ok(Some(reject(RejectReason::Locked)));
            }
        }
        Ok(None)
    }

    /// Gives back the attempts this leg took: its answer was right, or failed for no mistake
    /// of the user's (a directory that could not be asked).
    pub(crate) async fn give_back(&self, l: &mut Login<'_>) -> Result<(), EngineError> {
        self.release_all(&std::mem::take(&mut l.held)).await?;
        l.attempt = None;
        Ok(())
    }

    /// The login passed: the account's counts (every budget its factors count against from
    /// this address) are forgotten, as a right answer clears a token's fail counter.
    pub(crate) async fn clear_account(&self, l: &mut Login<'_>) -> Result<(), EngineError> {
        l.held.clear();
        l.attempt = None;
        let Some((realm, login)) = &l.account else {
            return Ok(());
        };
        let settings = &l.snap.settings;
        let mut keys: Vec<LockKey> = account_budgets(settings, realm, login, 0, l.ctx.client_ip)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        if settings.mfa_account_locking {
            keys.push(LockKey::mfa(realm, login));
        }
        self.ports.store.clear_locks(&keys).await?;
        Ok(())
    }
}

fn reject(reason: RejectReason) -> Outcome {
    Outcome::Reject(Box::new(Rejected { reason, user: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_settings() {
        let mut s = SystemSettings::default();
        let ip = Some("192.0.2.9".parse().unwrap());
        let b = account_budgets(&s, "Default", "Alice", 0, ip);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].0, LockKey::account("default", "alice"));
        assert_eq!(b[0].1.max_password, 5);
        // MFA locking off: the MFA step counts against the account.
        assert_eq!(account_budgets(&s, "default", "alice", 1, ip), b);
        s.mfa_account_locking = true;
        s.mfa_max_otp_attempts = 3;
        let mfa = account_budgets(&s, "default", "alice", 1, ip);
        assert_eq!(mfa[0].0, LockKey::mfa("default", "alice"));
        assert_eq!(mfa[0].1.max_otp, 3);
        s.lock_per_client_address = true;
        s.lock_all_addresses_attempts = 40;
        let per = account_budgets(&s, "default", "alice", 0, ip);
        assert_eq!(per[0].0, LockKey::account_from("default", "alice", ip));
        assert_eq!(per[0].1.max_otp, 5);
        assert_eq!(per[1].0, LockKey::account("default", "alice"));
        assert_eq!(per[1].1.max_otp, 40);
        s.account_locking = false;
        assert!(account_budgets(&s, "default", "alice", 0, ip).is_empty());
    }
}
