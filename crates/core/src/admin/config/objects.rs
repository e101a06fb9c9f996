//! The kinds of configuration objects ([`ConfigObject`]) and what differs between them: where
//! they sit in a declaration and a snapshot, their stored form, their secrets.

use super::Declaration;
use crate::model::app::{source_from_stored, source_to_stored};
use crate::model::client::{client_from_stored, client_to_stored};
use crate::model::delivery::{DeliveryProfile, delivery_from_stored, delivery_to_stored};
use crate::model::{Application, RadiusClient, Realm, UserSourceDef};
use crate::store::ConfigKind;
use serde::Serialize;
use serde_json::Value;

/// A kind of named configuration object (a user source, a realm, an application, a client, a
/// profile): what the declarative configuration, the admin API and the CLI do with every kind
/// is written once over this trait, and a new kind is one `impl` (and a line in
/// `for_each_kind!`).
pub trait ConfigObject:
    Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
    const KIND: ConfigKind;
    /// For messages: "application", "realm", "user source".
    const LABEL: &'static str;
    fn name(&self) -> &str;
    fn of(decl: &Declaration) -> &Vec<Self>;
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self>;
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self>;

    /// The stored form (secrets sealed under the master key).
    fn to_stored(&self, _store: &dyn crate::store::Store) -> Result<Value, String> {
        serde_json::to_value(self).map_err(|e| e.to_string())
    }

    /// Reads the stored form (secrets opened).
    fn from_stored(_store: &dyn crate::store::Store, body: Value) -> Result<Self, String> {
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    /// Given without its secret (an exported file never has them), the object keeps the
    /// secret of `stored`, the object of the same name kept now — only where that cannot hand
    /// the secret to somebody who could not read it.
    fn keep_stored_secret(&mut self, _stored: &Self) {}
}

impl ConfigObject for Application {
    const KIND: ConfigKind = ConfigKind::Application;
    const LABEL: &'static str = "application";
    fn name(&self) -> &str {
        self.name.as_str()
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.applications
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.applications
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.applications.values().cloned().collect()
    }
}

impl ConfigObject for Realm {
    const KIND: ConfigKind = ConfigKind::Realm;
    const LABEL: &'static str = "realm";
    fn name(&self) -> &str {
        self.name.as_str()
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.realms
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.realms
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.realms.values().cloned().collect()
    }
}

impl ConfigObject for RadiusClient {
    const KIND: ConfigKind = ConfigKind::RadiusClient;
    const LABEL: &'static str = "RADIUS client";
    fn name(&self) -> &str {
        &self.name
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.radius_clients
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.radius_clients
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.radius_clients.values().cloned().collect()
    }
    fn to_stored(&self, store: &dyn crate::store::Store) -> Result<Value, String> {
        client_to_stored(store, self)
    }
    fn from_stored(store: &dyn crate::store::Store, body: Value) -> Result<Self, String> {
        client_from_stored(store, body)
    }
    fn keep_stored_secret(&mut self, stored: &Self) {
        if self.secret.is_none() {
            self.secret = stored.secret.clone();
        }
    }
}

impl ConfigObject for UserSourceDef {
    const KIND: ConfigKind = ConfigKind::UserSource;
    const LABEL: &'static str = "user source";
    fn name(&self) -> &str {
        self.name.as_str()
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.user_sources
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.user_sources
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.source_defs.values().cloned().collect()
    }
    fn to_stored(&self, store: &dyn crate::store::Store) -> Result<Value, String> {
        source_to_stored(store, self)
    }
    fn from_stored(store: &dyn crate::store::Store, body: Value) -> Result<Self, String> {
        source_from_stored(store, body)
    }
    /// An LDAP source keeps its bind password only while it still binds as the same account
    /// to the same servers: the password is not handed to a server somebody who cannot read
    /// it just named.
    fn keep_stored_secret(&mut self, stored: &Self) {
        if let Some(l) = &mut self.ldap
            && l.bind_password.is_none()
            && l.bind_dn.is_some()
            && let Some(cur) = &stored.ldap
            && cur.bind_dn == l.bind_dn
            && cur.servers == l.servers
        {
            l.bind_password = cur.bind_password.clone();
        }
    }
}

impl ConfigObject for DeliveryProfile {
    const KIND: ConfigKind = ConfigKind::DeliveryProfile;
    const LABEL: &'static str = "delivery profile";
    fn name(&self) -> &str {
        &self.name
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.delivery_profiles
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.delivery_profiles
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.delivery_profiles.values().cloned().collect()
    }
    fn to_stored(&self, store: &dyn crate::store::Store) -> Result<Value, String> {
        delivery_to_stored(store, self)
    }
    fn from_stored(store: &dyn crate::store::Store, body: Value) -> Result<Self, String> {
        delivery_from_stored(store, body)
    }
    /// While it still sends to the same place.
    fn keep_stored_secret(&mut self, stored: &Self) {
        if self.secret().is_none() && stored.destination() == self.destination() {
            self.set_secret(stored.secret().cloned());
        }
    }
}

impl ConfigObject for crate::model::SyslogProfile {
    const KIND: ConfigKind = ConfigKind::SyslogProfile;
    const LABEL: &'static str = "syslog profile";
    fn name(&self) -> &str {
        &self.name
    }
    fn of(decl: &Declaration) -> &Vec<Self> {
        &decl.syslog_profiles
    }
    fn of_declaration(decl: &mut Declaration) -> &mut Vec<Self> {
        &mut decl.syslog_profiles
    }
    fn of_snapshot(snap: &crate::engine::Snapshot) -> Vec<Self> {
        snap.syslog_profiles.values().cloned().collect()
    }
}
