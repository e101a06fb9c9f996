//! Web SSO sessions: a browser signed in on the login page, and the applications whose factor
//! chains it passed. Kept by [`crate::sso::Sso`] by the hash of the cookie's key.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SsoSession {
    pub user: String,
    pub realm: String,
    /// Applications whose factors this session passed.
    pub apps: Vec<String>,
    /// Applications of `apps` whose last sign-in in this session proved two kinds of factor
    /// (REFEDS MFA: something known and something held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mfa_apps: Vec<String>,
    /// The last interactive sign-in (Unix seconds).
    pub auth_time: i64,
    /// The last use (Unix seconds).
    pub last_seen: i64,
    pub client_ip: String,
    pub user_agent: String,
    /// The first sign-in of this session (Unix seconds).
    #[serde(default)]
    pub created_at: i64,
    /// SAML service providers this session signed in to (for single logout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saml: Vec<SamlParticipant>,
    /// OpenID Connect clients (client ids) this session signed in to (for back-channel logout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oidc: Vec<String>,
    /// The session's id as relying parties see it (`sid`): random, kept while the session
    /// lives (its cookie key changes at every sign-in).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
}

/// A SAML service provider an SSO session signed in to: what its logout request names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlParticipant {
    /// The service provider's name.
    pub sp: String,
    pub name_id: String,
    pub name_id_format: String,
    pub session_index: String,
}

impl SsoSession {
    /// The web-state subject of a user's sessions (for listing them).
    pub fn subject(realm: &str, user: &str) -> String {
        format!("{}\u{1f}{}", realm.to_lowercase(), user.to_lowercase())
    }
}

/// A session as listed to its user or an administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SsoSessionInfo {
    /// The session's id: the hash of its cookie key (not the key).
    pub id: String,
    #[serde(flatten)]
    pub session: SsoSession,
    pub expires_at: i64,
}
