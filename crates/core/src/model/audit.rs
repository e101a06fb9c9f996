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
