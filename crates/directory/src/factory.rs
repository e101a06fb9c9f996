//! Building user sources from their definitions: local ones (core's) and LDAP ones.

use super::*;
use std::sync::Arc;
use tessera_core::clock::Clock;
use tessera_core::hashing::PasswordHasher;
use tessera_core::model::UserSourceDef;
use tessera_core::model::UserSourceKind;
use tessera_core::source::{LocalSourceFactory, UserSource, UserSourceFactory};
use tessera_core::store::Store;

/// Builds local and LDAP user sources.
#[derive(Debug)]
pub struct SourceFactory {
    pub local: LocalSourceFactory,
}

impl SourceFactory {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SourceFactory {
            local: LocalSourceFactory {
                store,
                hasher,
                clock,
            },
        }
    }
}

impl UserSourceFactory for SourceFactory {
    fn build(&self, def: &UserSourceDef) -> Result<Arc<dyn UserSource>, String> {
        match def.kind {
            UserSourceKind::Local => self.local.build(def),
            UserSourceKind::Ldap => Ok(Arc::new(LdapSource::new(def)?)),
        }
    }
}
