//! Administration: the operations behind the admin REST API, the CLI and `tessera apply`.
//! Every change is validated first (all problems reported at once, nothing changed on error)
//! and written to the audit log.

mod accounts;
mod api_clients;
mod config;
mod lockouts;
mod token_import;
mod tokens;
mod users;

pub use accounts::{LoginResult, SESSION_SECONDS};
pub use api_clients::{ApiClientPatch, CreatedApiClient, NewApiClient};
pub use config::{ConfigObject, Declaration, PlannedChange, bootstrap_defaults};
pub use lockouts::{LockInfo, Unlocked};
pub use token_import::{Carried, ImportEntry, ImportReport, TokenFileFormat};
pub use tokens::{EnrollInput, Enrolled, TokenInfo};
pub use users::{NewUserInput, UserInfo};

use crate::engine::{Engine, EngineError};
use crate::model::AuditRecord;
use crate::store::StoreError;
use std::sync::Arc;

/// Who makes a change, for the audit log.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `admin:<name>`, `cli:<os user>`, ….
    pub name: String,
    /// `api` or `cli`.
    pub door: String,
    pub client_ip: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| {
                uid()
                    .map(|u| format!("uid {u}"))
                    .unwrap_or_else(|| "unknown".into())
            });
        Actor {
            name: format!("cli:{user}"),
            door: "cli".into(),
            client_ip: None,
        }
    }
}

/// The real user id of this process (Linux), for naming CLI actors without `USER`.
fn uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AdminError::Conflict(what),
            other => AdminError::Engine(EngineError::Store(other)),
        }
    }
}

impl From<crate::hashing::HashError> for AdminError {
    fn from(e: crate::hashing::HashError) -> Self {
        AdminError::Engine(EngineError::Hash(e))
    }
}

impl AdminError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        AdminError::Invalid(vec![msg.into()])
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The administration service over an engine.
/// Checks RADIUS attribute names and values against the dictionary of the RADIUS front door
/// (the core does not know the dictionary).
pub trait AttributeCheck: Send + Sync + std::fmt::Debug {
    /// A reply attribute and, for static rules, its value.
    fn check_reply(&self, attribute: &str, value: Option<&str>) -> Result<(), String>;
    /// A request attribute named by an application rule.
    fn check_request(&self, attribute: &str) -> Result<(), String>;
}

#[derive(Debug, Clone)]
pub struct Admin {
    engine: Arc<Engine>,
    attributes: Option<Arc<dyn AttributeCheck>>,
}

impl Admin {
    pub fn new(engine: Arc<Engine>) -> Self {
        Admin {
            engine,
            attributes: None,
        }
    }

    /// Checks RADIUS reply rules with this dictionary.
    pub fn with_attribute_check(mut self, check: Arc<dyn AttributeCheck>) -> Self {
        self.attributes = Some(check);
        self
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn now(&self) -> i64 {
        self.engine.clock().now()
    }

    /// The audit records `query` asks for, newest first.
    pub async fn audit_records(
        &self,
        query: &crate::model::AuditQuery,
    ) -> AdminResult<Vec<crate::model::AuditRecord>> {
        Ok(self.engine.store().query_audit(query).await?)
    }

    /// The messages of the outbox: those not finished yet, or `all`; at most `limit`.
    pub async fn outbox(
        &self,
        all: bool,
        limit: u32,
    ) -> AdminResult<Vec<crate::model::OutboxMessage>> {
        Ok(self.engine.store().list_outbox(all, limit).await?)
    }

    /// Writes an audit record of an administrative action.
    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: Target<'_>,
        result: &str,
        reason: &str,
    ) -> AdminResult<()> {
        let record = AuditRecord::event(
            self.engine.clock().now_millis(),
            actor.door.clone(),
            actor.name.clone(),
            action,
        )
        .user(
            target.user.map(str::to_string),
            target.realm.map(str::to_string),
        )
        .serial(target.serial.map(str::to_string))
        .application(target.application.map(str::to_string))
        .client(actor.client_ip.clone(), None)
        .ended(result, reason);
        self.engine.store().append_audit(&record).await?;
        Ok(())
    }
}

/// What an audited action was about.
#[derive(Clone, Copy, Debug, Default)]
struct Target<'a> {
    user: Option<&'a str>,
    realm: Option<&'a str>,
    serial: Option<&'a str>,
    application: Option<&'a str>,
}
