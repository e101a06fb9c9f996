//! In-memory implementations of store roles, for tests of the services that take them (no
//! database, a fake clock). They keep the contract of `crates/store/tests/contract.rs` for the
//! roles they implement; the SQL store is the one that runs.

use crate::model::{AuditQuery, AuditRecord};
use crate::store::{AuditStore, RefreshToken, StoreResult, WebState, WebStateKind, WebStateStore};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Web state, OAuth grants and the audit trail, in memory.
#[derive(Debug, Default)]
pub struct MemWebState {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    states: HashMap<(WebStateKind, String), WebState>,
    revoked: HashSet<String>,
    /// Refresh tokens by hash, with whether each was spent.
    refresh: HashMap<String, (RefreshToken, bool)>,
    audit: Vec<AuditRecord>,
}

impl MemWebState {
    pub fn new() -> MemWebState {
        MemWebState::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The audit records appended so far, oldest first.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.with(|i| i.audit.clone())
    }

    /// How many states of `kind` are kept (live or not).
    pub fn count(&self, kind: WebStateKind) -> usize {
        self.with(|i| i.states.keys().filter(|(k, _)| *k == kind).count())
    }
}

#[async_trait]
impl WebStateStore for MemWebState {
    async fn revoke_token(&self, jti: &str, _expires_at: i64) -> StoreResult<()> {
        self.with(|i| i.revoked.insert(jti.to_string()));
        Ok(())
    }
    async fn token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.revoked.contains(jti)))
    }
    async fn put_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.with(|i| i.refresh.insert(token.hash.clone(), (token.clone(), false)));
        Ok(())
    }
    async fn use_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>> {
        Ok(self.with(|i| match i.refresh.get_mut(hash) {
            Some((t, used)) if !*used && t.client_id == client_id && t.expires_at > now => {
                *used = true;
                Some(t.clone())
            }
            _ => None,
        }))
    }
    async fn spent_refresh_token(
        &self,
        hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<Option<RefreshToken>> {
        Ok(self.with(|i| match i.refresh.get(hash) {
            Some((t, true)) if t.client_id == client_id && t.expires_at > now => Some(t.clone()),
            _ => None,
        }))
    }
    async fn revoke_refresh_tokens(
        &self,
        client_id: &str,
        username: &str,
        realm: &str,
        now: i64,
    ) -> StoreResult<u64> {
        Ok(self.with(|i| {
            let mut n = 0;
            for (t, used) in i.refresh.values_mut() {
                if !*used
                    && t.client_id == client_id
                    && t.username == username
                    && t.realm == realm
                    && t.expires_at > now
                {
                    *used = true;
                    n += 1;
                }
            }
            n
        }))
    }
    async fn put_web_state(&self, state: &WebState) -> StoreResult<()> {
        self.with(|i| {
            i.states
                .insert((state.kind, state.key_hash.clone()), state.clone())
        });
        Ok(())
    }
    async fn claim_web_state(&self, state: &WebState, now: i64) -> StoreResult<bool> {
        Ok(self.with(|i| {
            let key = (state.kind, state.key_hash.clone());
            if i.states.get(&key).is_some_and(|s| s.expires_at > now) {
                return false;
            }
            i.states.insert(key, state.clone());
            true
        }))
    }
    async fn web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        Ok(self.with(|i| {
            i.states
                .get(&(kind, key_hash.to_string()))
                .filter(|s| s.expires_at > now)
                .cloned()
        }))
    }
    async fn take_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<Option<WebState>> {
        Ok(self.with(|i| {
            let key = (kind, key_hash.to_string());
            match i.states.get(&key) {
                Some(s) if s.expires_at > now => i.states.remove(&key),
                _ => None,
            }
        }))
    }
    async fn web_states_of(
        &self,
        kind: WebStateKind,
        subject: &str,
        now: i64,
    ) -> StoreResult<Vec<WebState>> {
        let mut found: Vec<WebState> = self.with(|i| {
            i.states
                .values()
                .filter(|s| s.kind == kind && s.subject == subject && s.expires_at > now)
                .cloned()
                .collect()
        });
        found.sort_by_key(|s| s.expires_at);
        Ok(found)
    }
    async fn update_web_state(
        &self,
        kind: WebStateKind,
        key_hash: &str,
        was: &str,
        data: &str,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(
            self.with(|i| match i.states.get_mut(&(kind, key_hash.to_string())) {
                Some(s) if s.expires_at > now && s.data == was => {
                    s.data = data.to_string();
                    true
                }
                _ => false,
            }),
        )
    }
    async fn delete_web_state(&self, kind: WebStateKind, key_hash: &str) -> StoreResult<bool> {
        Ok(self.with(|i| i.states.remove(&(kind, key_hash.to_string())).is_some()))
    }
}

#[async_trait]
impl AuditStore for MemWebState {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        self.with(|i| {
            let mut r = record.clone();
            r.id = i64::try_from(i.audit.len()).unwrap_or(i64::MAX) + 1;
            i.audit.push(r);
        });
        Ok(())
    }
    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        Ok(self.with(|i| {
            i.audit
                .iter()
                .rev()
                .filter(|r| {
                    query
                        .user
                        .as_ref()
                        .is_none_or(|u| r.user.as_ref() == Some(u))
                })
                .filter(|r| query.action.as_ref().is_none_or(|a| r.action == *a))
                .take(query.limit.unwrap_or(100) as usize)
                .cloned()
                .collect()
        }))
    }
}
