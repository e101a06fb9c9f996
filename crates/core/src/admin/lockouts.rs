//! Lockout counters as administrators see and lift them: a user's (every form of the name,
//! the MFA step, every client address) and an administrator's.

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::lockout::{LockKey, LockState};
use serde::Serialize;

/// Per-address counts listed for one account at most.
const ADDRESSES_SHOWN: u32 = 1000;

/// One failed-attempt counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockInfo {
    /// What it counts: `sign-ins`, `sign-ins from 192.0.2.1`, `MFA step`.
    pub budget: String,
    /// The login name it counts for (as the lock key keeps it: lower case).
    pub login: String,
    pub password_fails: u32,
    pub otp_fails: u32,
    /// When the count started (Unix seconds).
    pub since: i64,
    /// Locked until (Unix seconds), if a budget was used up.
    pub locked_until: Option<i64>,
    /// Locked now.
    pub locked: bool,
}

/// What an unlock removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unlocked {
    pub user: String,
    /// The user's realm (none for administrators).
    pub realm: Option<String>,
    /// The counters that were there (removed now).
    pub cleared: Vec<LockInfo>,
    /// Whether any of them locked the account.
    pub was_locked: bool,
}

impl Admin {
    /// The failed-attempt counters of a user (`user` or `user@realm`): of the name as given and
    /// of the account's own name, for sign-ins (also per address) and the MFA step.
    pub async fn user_lockout(&self, user: &str, realm: Option<&str>) -> AdminResult<Unlocked> {
        let (realm, logins) = self.lock_names(user, realm).await?;
        let mut found = Vec::new();
        for login in &logins {
            found.extend(self.counters(&account_keys(&realm, login), login).await?);
        }
        Ok(Unlocked {
            user: logins.first().cloned().unwrap_or_default(),
            was_locked: found.iter().any(|i| i.locked),
            cleared: found,
            realm: Some(realm),
        })
    }

    /// Lifts every lock of a user and forgets the failed attempts (the token fail counters
    /// stay: `reset_token` clears those). Audited as `user_unlock`.
    pub async fn unlock_user(
        &self,
        actor: &Actor,
        user: &str,
        realm: Option<&str>,
    ) -> AdminResult<Unlocked> {
        let report = self.user_lockout(user, realm).await?;
        let (realm, logins) = self.lock_names(user, realm).await?;
        let store = self.engine.store();
        for login in &logins {
            let keys = account_keys(&realm, login);
            store.clear_locks(&keys.exact).await?;
            store.clear_locks_with_prefix(&keys.addresses).await?;
        }
        store.flush().await?;
        self.audit(
            actor,
            "user_unlock",
            Target {
                user: Some(&report.user),
                realm: Some(&realm),
                ..Target::default()
            },
            "ok",
            &summary(&report),
        )
        .await?;
        Ok(report)
    }

    /// The failed-attempt counters of an administrator's sign-ins.
    pub async fn admin_lockout(&self, name: &str) -> AdminResult<Unlocked> {
        let login = name.to_lowercase();
        let found = self.counters(&admin_keys(&login), &login).await?;
        Ok(Unlocked {
            user: login,
            realm: None,
            was_locked: found.iter().any(|i| i.locked),
            cleared: found,
        })
    }

    /// Lifts the lock of an administrator's sign-ins. Audited as `admin_unlock`.
    pub async fn unlock_admin(&self, actor: &Actor, name: &str) -> AdminResult<Unlocked> {
        if self.engine.store().admin(name).await?.is_none() {
            return Err(AdminError::NotFound(format!("administrator '{name}'")));
        }
        let report = self.admin_lockout(name).await?;
        let keys = admin_keys(&report.user);
        let store = self.engine.store();
        store.clear_locks(&keys.exact).await?;
        store.clear_locks_with_prefix(&keys.addresses).await?;
        store.flush().await?;
        self.audit(
            actor,
            "admin_unlock",
            Target {
                user: Some(name),
                ..Target::default()
            },
            "ok",
            &summary(&report),
        )
        .await?;
        Ok(report)
    }

    /// The realm and the login names a user's counters may be under: the name as given, and
    /// the account's own name when a user source finds another form of it (a directory finds
    /// `ALICE` or alice@corp.example for `alice`). An unknown name (an attacker may lock names
    /// that do not exist) or an unreachable directory leaves the name as given.
    async fn lock_names(
        &self,
        user: &str,
        realm: Option<&str>,
    ) -> AdminResult<(String, Vec<String>)> {
        let snap = self.engine.snapshot();
        let (login, realm) = snap.split_login(user, realm);
        let realm = realm.unwrap_or_else(|| snap.settings.default_realm.clone());
        let Some(realm_def) = snap.realm(&realm) else {
            return Err(AdminError::NotFound(format!("realm '{realm}'")));
        };
        let mut logins = vec![login.to_lowercase()];
        match self.engine.find_user(&snap, &realm_def.name, &login).await {
            Ok(Some(found)) => {
                let own = found.username.to_lowercase();
                if !logins.contains(&own) {
                    logins.push(own);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "user not looked up for unlocking; the name as given is unlocked")
            }
        }
        Ok((realm_def.name.0.clone(), logins))
    }

    async fn counters(&self, keys: &Keys, login: &str) -> AdminResult<Vec<LockInfo>> {
        let store = self.engine.store();
        let now = self.now();
        let mut found: Vec<(LockKey, LockState)> = Vec::new();
        for key in &keys.exact {
            if let Some(state) = store.lock_state(key).await? {
                found.push((key.clone(), state));
            }
        }
        for (stored, state) in store
            .locks_with_prefix(&keys.addresses, ADDRESSES_SHOWN)
            .await?
        {
            if let Some(key) = LockKey::from_stored(&stored) {
                found.push((key, state));
            }
        }
        Ok(found
            .into_iter()
            .filter(|(_, s)| s.password_fails > 0 || s.otp_fails > 0 || s.is_locked(now))
            .map(|(key, s)| LockInfo {
                budget: key.describe(),
                login: login.to_string(),
                password_fails: s.password_fails,
                otp_fails: s.otp_fails,
                since: s.first_fail_at,
                locked_until: s.locked_until.filter(|_| s.is_locked(now)),
                locked: s.is_locked(now),
            })
            .collect())
    }
}

/// The keys of one name: those known exactly, and the prefix of its per-address keys.
struct Keys {
    exact: Vec<LockKey>,
    addresses: String,
}

fn account_keys(realm: &str, login: &str) -> Keys {
    Keys {
        exact: vec![LockKey::account(realm, login), LockKey::mfa(realm, login)],
        addresses: LockKey::account_addresses_prefix(realm, login),
    }
}

fn admin_keys(name: &str) -> Keys {
    Keys {
        exact: vec![LockKey::admin(name)],
        addresses: LockKey::admin_addresses_prefix(name),
    }
}

/// The audit reason of an unlock.
fn summary(report: &Unlocked) -> String {
    if report.cleared.is_empty() {
        return "no failed attempts on record".into();
    }
    let parts: Vec<String> = report
        .cleared
        .iter()
        .map(|i| {
            format!(
                "{} of {}: {} password and {} code failures{}",
                i.budget,
                i.login,
                i.password_fails,
                i.otp_fails,
                if i.locked { ", locked" } else { "" }
            )
        })
        .collect();
    format!("unlocked ({})", parts.join("; "))
}
