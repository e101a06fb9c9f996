//! The authentication engine: one entry point for every front door.
//!
//! `Engine::authenticate` takes one leg of a login and decides: accept, challenge for the next
//! factor, or reject. The login is a small state machine over the application's factor chain;
//! its state between legs is a [`crate::model::Transaction`] in the store, so any node can take
//! the next leg.

mod flow;
mod links;
mod lockout;
mod otp;
mod password;
mod request;
mod sent;
mod snapshot;
#[cfg(test)]
mod tests;

pub use flow::Triggered;
pub use links::{LinkAnswer, LinkInfo};
pub use request::{
    Accepted, AuthRequest, Challenged, ClientMode, Door, Outcome, PollStatus, Prompt,
    REJECT_MESSAGE, RejectReason, Rejected, RequestCtx,
};
pub use sent::{ChannelError, code_prompt, expected_channel};
pub use snapshot::Snapshot;

pub(crate) use lockout::{account_budgets, admin_budgets};
pub(crate) use otp::sync_range as sync_range_of;

use crate::clock::Clock;
use crate::hashing::{HashCost, HashError, PasswordHasher};
use crate::ids::RealmName;
use crate::model::{AuditRecord, User};
use crate::rng::Rng;
use crate::source::{SourceError, UserSourceFactory};
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A channel the request asked for cannot be used (seed 003's 1601–1603).
    #[error("{0}")]
    Channel(#[from] ChannelError),
}

impl EngineError {
    /// Too many passwords wait to be checked: the request is shed (HTTP 503 with
    /// `Retry-After`, RADIUS: no answer so that the NAS tries again), nothing was decided.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            EngineError::Hash(HashError::Busy)
                | EngineError::Source(SourceError::Hash(HashError::Busy))
        )
    }
}

/// The implementations the engine works with.
#[derive(Clone, Debug)]
pub struct Ports {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Rng>,
    pub sources: Arc<dyn UserSourceFactory>,
}

/// Upper bound of the per-node user cache; it is emptied when full.
const USER_CACHE_MAX: usize = 100_000;

type UserCache = HashMap<(String, String), (i64, User, RealmName)>;

#[derive(Debug)]
pub struct Engine {
    ports: Ports,
    snapshot: RwLock<Arc<Snapshot>>,
    reload: tokio::sync::Mutex<()>,
    user_cache: Mutex<UserCache>,
    /// Woken when this node queued a message, so that the outbox worker sends it at once.
    outbox: tokio::sync::Notify,
    /// The address served while the `public_url` setting is empty (a listener on loopback).
    default_public_url: std::sync::OnceLock<String>,
    /// Web sign-in state (SSO sessions, login flows, codes, OAuth grants).
    sso: crate::sso::Sso,
    /// The server's own keys, sealed in the store.
    keys: crate::keys::Keys,
}

impl Engine {
    pub async fn new(ports: Ports) -> Result<Self, EngineError> {
        let snap = Snapshot::load(ports.store.as_ref(), ports.sources.as_ref()).await?;
        ports.hasher.set_cost(cost_of(&snap));
        let sso = crate::sso::Sso::new(
            ports.store.clone(),
            ports.store.clone(),
            ports.clock.clone(),
            ports.rng.clone(),
        );
        let keys = crate::keys::Keys::new(ports.store.clone(), ports.store.clone());
        Ok(Engine {
            sso,
            keys,
            ports,
            snapshot: RwLock::new(Arc::new(snap)),
            reload: tokio::sync::Mutex::new(()),
            user_cache: Mutex::new(HashMap::new()),
            outbox: tokio::sync::Notify::new(),
            default_public_url: std::sync::OnceLock::new(),
        })
    }

    /// The address this server is reached at while the `public_url` setting is empty: set once,
    /// by the server when its HTTP listener is on loopback (where only this machine reaches it,
    /// so the address it listens on is the one browsers use).
    pub fn use_default_public_url(&self, url: String) {
        let _ = self.default_public_url.set(url);
    }

    /// The base of the server's own addresses (issuer, links, SAML endpoints), without a
    /// trailing `/`: the `public_url` setting, else the loopback default; none when neither.
    pub fn public_url(&self) -> Option<String> {
        let set = self.snapshot().settings.public_url.clone();
        let url = if set.is_empty() {
            self.default_public_url.get()?.clone()
        } else {
            set
        };
        Some(url.trim_end_matches('/').to_string())
    }

    /// Web sign-in state: SSO sessions, login flows, authorization codes, OAuth grants.
    pub fn sso(&self) -> &crate::sso::Sso {
        &self.sso
    }

    /// Appends a record to the audit trail (for what a door decides or does outside
    /// [`Engine::authenticate`], which audits its own decisions).
    pub async fn audit(&self, record: &crate::model::AuditRecord) -> crate::store::StoreResult<()> {
        self.ports.store.append_audit(record).await
    }

    /// Whether the store answers (for readiness probes).
    pub async fn ping(&self) -> crate::store::StoreResult<()> {
        self.ports.store.ping().await
    }

    /// The random source (for ids and nonces a door makes up).
    pub fn rng(&self) -> &dyn crate::rng::Rng {
        self.ports.rng.as_ref()
    }

    /// The server's own keys (signing keys, the payload key, salts), sealed in the store.
    pub fn keys(&self) -> &crate::keys::Keys {
        &self.keys
    }

    /// The ports, for the services of this crate (front doors use the services).
    pub(crate) fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Notified whenever this node queued a message for delivery.
    pub fn outbox_signal(&self) -> &tokio::sync::Notify {
        &self.outbox
    }

    /// The whole store, for the services of this crate: no front door holds it.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.ports.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ports.clock
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the configuration if it changed in the store (on this node or another).
    /// Returns true when it reloaded.
    pub async fn refresh(&self) -> Result<bool, EngineError> {
        let _guard = self.reload.lock().await;
        let current = self.snapshot().version;
        if self.ports.store.config_version().await? == current {
            return Ok(false);
        }
        self.reload_locked().await?;
        Ok(true)
    }

    /// Reloads the configuration unconditionally (after a change made through this node).
    pub async fn reload(&self) -> Result<(), EngineError> {
        let _guard = self.reload.lock().await;
        self.reload_locked().await
    }

    async fn reload_locked(&self) -> Result<(), EngineError> {
        let snap = Snapshot::load(self.ports.store.as_ref(), self.ports.sources.as_ref()).await?;
        for p in &snap.problems {
            tracing::warn!(problem = %p, "configuration object ignored");
        }
        self.ports.hasher.set_cost(cost_of(&snap));
        match self.snapshot.write() {
            Ok(mut s) => *s = Arc::new(snap),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(snap),
        }
        self.forget_users();
        Ok(())
    }

    /// Empties this node's user cache (after a user changed).
    pub fn forget_users(&self) {
        if let Ok(mut cache) = self.user_cache.lock() {
            cache.clear();
        }
    }

    /// The client of a request: the connecting peer, or the address a trusted proxy names for
    /// it (seed 002's "override authorization client"). `forwarded` lists X-Forwarded-For from
    /// the nearest hop outwards; `claimed` is the `client` parameter.
    pub fn resolve_client_ip(
        &self,
        peer: IpAddr,
        forwarded: &[IpAddr],
        claimed: Option<IpAddr>,
    ) -> IpAddr {
        let snap = self.snapshot();
        if snap.proxies.is_empty() {
            return peer;
        }
        let mut path = Vec::with_capacity(forwarded.len() + 2);
        path.push(peer);
        path.extend_from_slice(forwarded);
        path.extend(claimed);
        snap.proxies.resolve(&path).unwrap_or(peer)
    }

    /// Finds a user in a realm's sources, in order, through the user cache when enabled.
    pub async fn find_user(
        &self,
        snap: &Snapshot,
        realm: &RealmName,
        login: &str,
    ) -> Result<Option<User>, EngineError> {
        Ok(self.find_user_in(snap, realm, login).await?.0)
    }

    /// The user cache's entry for a login name, if fresh.
    pub(crate) fn cached_user(
        &self,
        snap: &Snapshot,
        realm: &RealmName,
        login: &str,
    ) -> Option<User> {
        if snap.settings.user_cache_seconds == 0 {
            return None;
        }
        let key = (realm.0.to_lowercase(), login.to_lowercase());
        let now = self.ports.clock.now();
        let cache = self.user_cache.lock().ok()?;
        cache
            .get(&key)
            .filter(|(expires, _, _)| *expires > now)
            .map(|(_, user, _)| user.clone())
    }

    /// `find_user`, also saying whether every source before the one that answered could be
    /// asked (false: an earlier source was down, so the answer may be another person's
    /// account of the same name; it is not cached).
    pub(crate) async fn find_user_in(
        &self,
        snap: &Snapshot,
        realm: &RealmName,
        login: &str,
    ) -> Result<(Option<User>, bool), EngineError> {
        let ttl = i64::from(snap.settings.user_cache_seconds);
        let now = self.ports.clock.now();
        let key = (realm.0.to_lowercase(), login.to_lowercase());
        if ttl > 0
            && let Ok(cache) = self.user_cache.lock()
            && let Some((expires, user, _)) = cache.get(&key)
            && *expires > now
        {
            return Ok((Some(user.clone()), true));
        }
        let Some(realm_def) = snap.realm(realm.as_str()) else {
            return Ok((None, true));
        };
        // A source that cannot be asked is passed over; if no later source knows the user,
        // the login fails because of it (not as an unknown user).
        let mut unavailable = None;
        for source_name in &realm_def.sources {
            let Some(source) = snap.source(source_name.as_str()) else {
                // Not loaded (its definition could not be used; the log says why): like a
                // source that is down, it may know the name.
                unavailable.get_or_insert(SourceError::Unavailable {
                    source_name: source_name.0.clone(),
                    detail: "it could not be loaded (see the server log)".into(),
                });
                continue;
            };
            let found = match source.find(login).await {
                Ok(found) => found,
                Err(e @ SourceError::Unavailable { .. }) => {
                    tracing::warn!(error = %e, "user source passed over");
                    unavailable.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(user) = found {
                if ttl > 0
                    && unavailable.is_none()
                    && let Ok(mut cache) = self.user_cache.lock()
                {
                    if cache.len() >= USER_CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key, (now + ttl, user.clone(), realm.clone()));
                }
                if let Some(e) = &unavailable {
                    tracing::warn!(user = %user.username, source = %user.source, error = %e, "user found in a later source while an earlier one was down");
                }
                return Ok((Some(user), unavailable.is_none()));
            }
        }
        match unavailable {
            Some(e) => Err(e.into()),
            None => Ok((None, true)),
        }
    }

    pub(crate) async fn audit_decision(&self, record: AuditRecord) -> Result<(), EngineError> {
        self.ports.store.append_audit(&record).await?;
        Ok(())
    }
}

fn cost_of(snap: &Snapshot) -> HashCost {
    HashCost {
        memory_kib: snap.settings.argon2_memory_kib,
        iterations: snap.settings.argon2_iterations,
        parallelism: snap.settings.argon2_parallelism,
    }
}

/// The detail of a user source that could not be asked, if that is what `e` is.
pub(crate) fn unavailable_detail(e: &EngineError) -> Option<String> {
    match e {
        EngineError::Source(e @ SourceError::Unavailable { .. }) => Some(e.to_string()),
        _ => None,
    }
}
