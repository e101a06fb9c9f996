//! Users as user sources return them.

use crate::ids::{SourceName, UserId, UserRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A user found in a user source, with the attributes factors and rules need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub source: SourceName,
    pub id: UserId,
    pub username: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The manager's login name (for manager approval).
    pub manager: Option<String>,
    pub groups: Vec<String>,
    pub enabled: bool,
    /// Unix seconds after which the account can no longer sign in.
    pub expires_at: Option<i64>,
    /// More attributes a directory read (lower-case names), for rules: `department`,
    /// `memberof` (group DNs), `dn`, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl User {
    /// An enabled user with a name and nothing else.
    pub fn new(source: SourceName, id: UserId, username: String) -> Self {
        User {
            source,
            id,
            username,
            given_name: None,
            surname: None,
            email: None,
            phone: None,
            manager: None,
            groups: Vec::new(),
            enabled: true,
            expires_at: None,
            attributes: BTreeMap::new(),
        }
    }

    pub fn user_ref(&self) -> UserRef {
        UserRef {
            source: self.source.clone(),
            id: self.id.clone(),
        }
    }

    /// Enabled and not expired at `now` (Unix seconds).
    pub fn is_active(&self, now: i64) -> bool {
        self.enabled && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A user of a local user source as stored, with its password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub user: User,
    /// Argon2id PHC string; `None` when the user has no password (OTP-only users).
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for LocalUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalUser")
            .field("user", &self.user)
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// The fields of a new local user; the password is already hashed.
#[derive(Clone, Debug)]
pub struct NewLocalUser {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A change to a local user: `None` leaves a field as it is; `Some(None)` clears it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "double_option")]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub surname: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub manager: Option<Option<String>>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    pub expires_at: Option<Option<i64>>,
    /// Already hashed by the caller; never deserialized from input.
    #[serde(skip)]
    pub password_hash: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl UserPatch {
    pub fn apply(&self, user: &mut User) {
        if let Some(v) = &self.given_name {
            user.given_name = v.clone();
        }
        if let Some(v) = &self.surname {
            user.surname = v.clone();
        }
        if let Some(v) = &self.email {
            user.email = v.clone();
        }
        if let Some(v) = &self.phone {
            user.phone = v.clone();
        }
        if let Some(v) = &self.manager {
            user.manager = v.clone();
        }
        if let Some(v) = &self.groups {
            user.groups = v.clone();
        }
        if let Some(v) = self.enabled {
            user.enabled = v;
        }
        if let Some(v) = self.expires_at {
            user.expires_at = v;
        }
    }
}
