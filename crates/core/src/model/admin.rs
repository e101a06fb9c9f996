//! Administrator accounts and their sessions.

use serde::{Deserialize, Serialize};

/// What an administrator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// Read everything, change nothing.
    Auditor,
    /// A service account of an integration (e.g. a credential provider): may trigger
    /// challenges on behalf of users, nothing else.
    Service,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Auditor => "auditor",
            AdminRole::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(AdminRole::Admin),
            "auditor" => Some(AdminRole::Auditor),
            "service" => Some(AdminRole::Service),
            _ => None,
        }
    }

    pub fn can_read(self) -> bool {
        matches!(self, AdminRole::Admin | AdminRole::Auditor)
    }

    pub fn can_write(self) -> bool {
        matches!(self, AdminRole::Admin)
    }

    pub fn can_trigger_challenge(self) -> bool {
        matches!(self, AdminRole::Admin | AdminRole::Service)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct AdminAccount {
    pub name: String,
    pub password_hash: String,
    pub role: AdminRole,
    pub enabled: bool,
    pub created_at: i64,
}

impl std::fmt::Debug for AdminAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAccount")
            .field("name", &self.name)
            .field("password_hash", &"***")
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A signed-in administrator. The bearer token itself is never stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSession {
    pub token_hash: String,
    pub admin: String,
    pub role: AdminRole,
    pub created_at: i64,
    pub expires_at: i64,
}
