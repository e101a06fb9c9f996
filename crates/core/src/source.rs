//! User sources: where users are found and their passwords checked. A realm searches its
//! sources in order. The local source lives here; LDAP/Active Directory sources implement the
//! same trait in the directory crate and are built by the server's [`UserSourceFactory`].

use crate::clock::Clock;
use crate::hashing::PasswordHasher;
use crate::ids::{SourceName, UserId};
use crate::model::{User, UserSourceDef, UserSourceKind};
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory could not be reached or answered with an error.
    #[error("user source '{source_name}' is unavailable: {detail}")]
    Unavailable { source_name: String, detail: String },
    /// A password could not be checked (the hashing queue is full).
    #[error(transparent)]
    Hash(#[from] crate::hashing::HashError),
}

/// Why a password could not be changed, in words a user understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordChangeError {
    #[error("the current password is wrong")]
    WrongOldPassword,
    /// The directory's password policy refused the new password (too short, too simple, used
    /// before, changed too recently).
    #[error("the new password does not meet the password policy{}", detail_suffix(.0))]
    PolicyViolation(String),
    #[error("this user source cannot change passwords: {0}")]
    NotSupported(String),
    #[error("the directory refused the change: {0}")]
    Refused(String),
    #[error(transparent)]
    Source(#[from] SourceErrorText),
}

/// A [`SourceError`] as text (so that the error can be compared in tests).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SourceErrorText(pub String);

impl From<SourceError> for PasswordChangeError {
    fn from(e: SourceError) -> Self {
        PasswordChangeError::Source(SourceErrorText(e.to_string()))
    }
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

#[async_trait]
pub trait UserSource: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &SourceName;
    fn kind(&self) -> UserSourceKind;
    /// Looks a login name up (case-insensitively).
    async fn find(&self, login: &str) -> Result<Option<User>, SourceError>;
    async fn get(&self, id: &UserId) -> Result<Option<User>, SourceError>;
    /// Checks the user's password. `Ok(false)` is a wrong password, never an error.
    async fn verify_password(&self, user: &User, password: &str) -> Result<bool, SourceError>;
    /// Takes about the time a password check takes, for a login name nobody has (so that
    /// timing does not tell unknown users apart); refused alike when checks are refused.
    async fn waste_verify(&self) -> Result<(), SourceError>;
    /// Changes the user's password: the user's own change with `old`, an administrator's reset
    /// without.
    async fn change_password(
        &self,
        user: &User,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), PasswordChangeError>;
}

/// Turns user-source definitions into live sources.
pub trait UserSourceFactory: Send + Sync + std::fmt::Debug {
    fn build(&self, def: &UserSourceDef) -> Result<Arc<dyn UserSource>, String>;
}

/// Users kept in Tessera's store, with Argon2id password hashes.
#[derive(Debug)]
pub struct LocalSource {
    name: SourceName,
    store: Arc<dyn Store>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
}

impl LocalSource {
    pub fn new(
        name: SourceName,
        store: Arc<dyn Store>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        LocalSource {
            name,
            store,
            hasher,
            clock,
        }
    }
}

#[async_trait]
impl UserSource for LocalSource {
    fn name(&self) -> &SourceName {
        &self.name
    }

    fn kind(&self) -> UserSourceKind {
        UserSourceKind::Local
    }

    async fn find(&self, login: &str) -> Result<Option<User>, SourceError> {
        Ok(self
            .store
            .local_user_by_name(&self.name, login)
            .await?
            .map(|u| u.user))
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, SourceError> {
        Ok(self
            .store
            .local_user_by_id(&self.name, id)
            .await?
            .map(|u| u.user))
    }

    async fn verify_password(&self, user: &User, password: &str) -> Result<bool, SourceError> {
        let stored = self.store.local_user_by_id(&self.name, &user.id).await?;
        match stored.and_then(|u| u.password_hash) {
            Some(phc) => Ok(self.hasher.verify(password, &phc).await?),
            None => {
                // No password set: never matches, but take the time a check takes.
                self.hasher.waste_verify().await?;
                Ok(false)
            }
        }
    }

    async fn waste_verify(&self) -> Result<(), SourceError> {
        Ok(self.hasher.waste_verify().await?)
    }

    async fn change_password(
        &self,
        user: &User,
        old: Option<&str>,
        new: &str,
    ) -> Result<(), PasswordChangeError> {
        if let Some(old) = old
            && !self.verify_password(user, old).await?
        {
            return Err(PasswordChangeError::WrongOldPassword);
        }
        let hash = self
            .hasher
            .hash(new)
            .await
            .map_err(|e| PasswordChangeError::Refused(e.to_string()))?;
        let patch = crate::model::UserPatch {
            password_hash: Some(Some(hash)),
            ..Default::default()
        };
        self.store
            .update_local_user(&self.name, &user.id, &patch, self.clock.now())
            .await
            .map_err(SourceError::from)?;
        Ok(())
    }
}

/// Builds the source kinds this crate knows (local users).
#[derive(Debug)]
pub struct LocalSourceFactory {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub clock: Arc<dyn Clock>,
}

impl UserSourceFactory for LocalSourceFactory {
    fn build(&self, def: &UserSourceDef) -> Result<Arc<dyn UserSource>, String> {
        match def.kind {
            UserSourceKind::Local => Ok(Arc::new(LocalSource::new(
                def.name.clone(),
                self.store.clone(),
                self.hasher.clone(),
                self.clock.clone(),
            ))),
            other => Err(format!(
                "{} user sources are not available in this build",
                other.as_str()
            )),
        }
    }
}
