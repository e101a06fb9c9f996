//! Audit records: one for every authentication decision and every administrative change.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Assigned by the store.
    #[serde(default)]
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Who acted: `user`, `admin:<name>`, `cli:<os user>`, `service:<name>`.
    pub actor: String,
    /// What happened: `validate_check`, `trigger_challenge`, `token_enroll`, `user_create`, ….
    pub action: String,
    /// The front door or interface: `validate`, `radius`, `api`, `cli`.
    pub door: String,
    pub user: Option<String>,
    pub realm: Option<String>,
    pub serial: Option<String>,
    pub application: Option<String>,
    pub transaction_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// `accept`, `reject`, `challenge`, `ok`, `denied`, `error`.
    pub result: String,
    /// Why, in words for the administrator (never a secret).
    pub reason: String,
}

impl AuditRecord {
    /// A record of `action`, done by `actor` through `door` at `at_ms` (Unix milliseconds);
    /// the builders below add whom it concerns and [`AuditRecord::ended`] how it ended.
    pub fn event(
        at_ms: i64,
        door: impl Into<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord {
            at_ms,
            door: door.into(),
            actor: actor.into(),
            action: action.into(),
            ..AuditRecord::default()
        }
    }

    /// The user (login name) and realm it concerns.
    pub fn user(mut self, user: Option<String>, realm: Option<String>) -> Self {
        self.user = user;
        self.realm = realm;
        self
    }

    pub fn serial(mut self, serial: Option<String>) -> Self {
        self.serial = serial;
        self
    }

    pub fn application(mut self, application: Option<String>) -> Self {
        self.application = application;
        self
    }

    pub fn transaction(mut self, transaction_id: Option<String>) -> Self {
        self.transaction_id = transaction_id;
        self
    }

    /// Where the request came from: the client's address and user agent.
    pub fn client(mut self, client_ip: Option<String>, user_agent: Option<String>) -> Self {
        self.client_ip = client_ip;
        self.user_agent = user_agent;
        self
    }

    /// How it ended (`accept`, `reject`, `ok`, `error`, …) and why, in words for the
    /// administrator.
    pub fn ended(mut self, result: impl Into<String>, reason: impl Into<String>) -> Self {
        self.result = result.into();
        self.reason = reason.into();
        self
    }
}

/// Filters for reading the audit log, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    pub user: Option<String>,
    pub serial: Option<String>,
    pub action: Option<String>,
    pub result: Option<String>,
    pub actor: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// At most this many records (default 100, at most 10000).
    pub limit: Option<u32>,
    /// Only records with a smaller id (paging backwards).
    pub before_id: Option<i64>,
}
