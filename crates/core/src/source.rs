//! User sources: where users are found and their passwords checked. A realm searches its
//! sources in order. The local source lives here; LDAP/Active Directory sources implement the
//! same trait in the directory crate and are built by the server's [`UserSourceFactory`].

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
}

impl LocalSource {
    pub fn new(name: SourceName, store: Arc<dyn Store>, hasher: Arc<dyn PasswordHasher>) -> Self {
        LocalSource {
            name,
            store,
            hasher,
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
            Some(phc) => Ok(self.hasher.verify(password, &phc).await),
            None => {
                // No password set: never matches, but take the time a check takes.
                self.hasher.waste_verify().await;
                Ok(false)
            }
        }
    }
}

/// Builds the source kinds this crate knows (local users).
#[derive(Debug)]
pub struct LocalSourceFactory {
    pub store: Arc<dyn Store>,
    pub hasher: Arc<dyn PasswordHasher>,
}

impl UserSourceFactory for LocalSourceFactory {
    fn build(&self, def: &UserSourceDef) -> Result<Arc<dyn UserSource>, String> {
        match def.kind {
            UserSourceKind::Local => Ok(Arc::new(LocalSource::new(
                def.name.clone(),
                self.store.clone(),
                self.hasher.clone(),
            ))),
        }
    }
}
