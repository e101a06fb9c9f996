//! The configuration the engine works from: settings, user sources, realms and applications as
//! one immutable value, reloaded when the store's config version moves.

use crate::ids::{AppName, RealmName};
use crate::model::app::source_from_stored;
use crate::model::client::client_from_stored;
use crate::model::delivery::{DeliveryProfile, delivery_from_stored};
use crate::model::{Application, RadiusClient, Realm, UserSourceDef};
use crate::netmatch::ProxyChains;
use crate::settings::SystemSettings;
use crate::source::{UserSource, UserSourceFactory};
use crate::store::{ConfigKind, Store, StoreResult};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub settings: SystemSettings,
    pub proxies: ProxyChains,
    /// The networks exempt from per-address request budgets (`rate_limit_exempt`).
    pub rate_limit_exempt: Vec<ipnet::IpNet>,
    /// Keyed by lower-case name.
    pub realms: BTreeMap<String, Realm>,
    pub source_defs: BTreeMap<String, UserSourceDef>,
    pub sources: BTreeMap<String, Arc<dyn UserSource>>,
    pub applications: BTreeMap<String, Application>,
    /// RADIUS clients with their secrets opened, keyed by lower-case name.
    pub radius_clients: BTreeMap<String, RadiusClient>,
    /// Delivery profiles with their secrets opened, keyed by lower-case name.
    pub delivery_profiles: BTreeMap<String, DeliveryProfile>,
    pub syslog_profiles: BTreeMap<String, crate::model::SyslogProfile>,
    /// API clients, keyed by lower-case name.
    pub api_clients: BTreeMap<String, crate::model::ApiClient>,
    pub saml_sps: BTreeMap<String, crate::model::SamlServiceProvider>,
    /// Stored objects that could not be used, for the operator's log.
    pub problems: Vec<String>,
}

impl Snapshot {
    pub async fn load(store: &dyn Store, factory: &dyn UserSourceFactory) -> StoreResult<Self> {
        let version = store.config_version().await?;
        let mut problems = Vec::new();
        let stored = store.settings().await?;
        let settings = match SystemSettings::default().merged(&stored) {
            Ok(s) => s,
            Err(errs) => {
                // Keep what is valid; report the rest.
                let mut good = stored.clone();
                for e in &errs {
                    good.remove(&e.key);
                    problems.push(format!("setting {e}"));
                }
                SystemSettings::default().merged(&good).unwrap_or_default()
            }
        };
        let proxies = ProxyChains::parse(&settings.override_client).unwrap_or_default();
        let rate_limit_exempt = settings.exempt_networks().unwrap_or_default();

        let mut source_defs = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::UserSource).await? {
            match source_from_stored(store, doc.body) {
                Ok(def) => match factory.build(&def) {
                    Ok(src) => {
                        sources.insert(def.name.0.to_lowercase(), src);
                        source_defs.insert(def.name.0.to_lowercase(), def);
                    }
                    Err(e) => problems.push(format!("user source {}: {e}", doc.name)),
                },
                Err(e) => problems.push(format!("user source {}: {e}", doc.name)),
            }
        }
        let mut realms = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::Realm).await? {
            match serde_json::from_value::<Realm>(doc.body) {
                Ok(r) => {
                    realms.insert(r.name.0.to_lowercase(), r);
                }
                Err(e) => problems.push(format!("realm {}: {e}", doc.name)),
            }
        }
        let mut applications = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::Application).await? {
            match serde_json::from_value::<Application>(doc.body) {
                Ok(a) => {
                    applications.insert(a.name.0.to_lowercase(), a);
                }
                Err(e) => problems.push(format!("application {}: {e}", doc.name)),
            }
        }
        let mut radius_clients = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::RadiusClient).await? {
            match client_from_stored(store, doc.body) {
                Ok(c) => {
                    radius_clients.insert(c.name.to_lowercase(), c);
                }
                Err(e) => problems.push(format!("RADIUS client {}: {e}", doc.name)),
            }
        }
        let mut delivery_profiles = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::DeliveryProfile).await? {
            match delivery_from_stored(store, doc.body) {
                Ok(p) => {
                    delivery_profiles.insert(p.name.to_lowercase(), p);
                }
                Err(e) => problems.push(format!("delivery profile {}: {e}", doc.name)),
            }
        }
        let mut syslog_profiles = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::SyslogProfile).await? {
            match serde_json::from_value::<crate::model::SyslogProfile>(doc.body) {
                Ok(p) => {
                    syslog_profiles.insert(p.name.to_lowercase(), p);
                }
                Err(e) => problems.push(format!("syslog profile {}: {e}", doc.name)),
            }
        }
        let mut api_clients = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::ApiClient).await? {
            match serde_json::from_value::<crate::model::ApiClient>(doc.body) {
                Ok(c) => {
                    api_clients.insert(c.name.to_lowercase(), c);
                }
                Err(e) => problems.push(format!("API client {}: {e}", doc.name)),
            }
        }
        let mut saml_sps = BTreeMap::new();
        for doc in store.config_docs(ConfigKind::SamlSp).await? {
            match serde_json::from_value::<crate::model::SamlServiceProvider>(doc.body) {
                Ok(c) => {
                    saml_sps.insert(c.name.to_lowercase(), c);
                }
                Err(e) => problems.push(format!("SAML service provider {}: {e}", doc.name)),
            }
        }
        Ok(Snapshot {
            version,
            saml_sps,
            delivery_profiles,
            syslog_profiles,
            api_clients,
            radius_clients,
            settings,
            proxies,
            rate_limit_exempt,
            realms,
            source_defs,
            sources,
            applications,
            problems,
        })
    }

    /// The RADIUS client a packet from `source` naming `nas_identifier` comes from: the most
    /// specific match (NAS-Identifier, then the longest prefix).
    pub fn radius_client_for(
        &self,
        source: std::net::IpAddr,
        nas_identifier: Option<&str>,
    ) -> Option<&RadiusClient> {
        self.radius_clients
            .values()
            .filter_map(|c| c.match_score(source, nas_identifier).map(|s| (s, c)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, c)| c)
    }

    /// The API client with an OAuth2 `client_id`.
    pub fn api_client_by_id(&self, client_id: &str) -> Option<&crate::model::ApiClient> {
        self.api_clients.values().find(|c| c.client_id == client_id)
    }

    /// The SAML service provider with an entity ID.
    pub fn saml_sp_by_entity(&self, entity_id: &str) -> Option<&crate::model::SamlServiceProvider> {
        self.saml_sps.values().find(|c| c.entity_id == entity_id)
    }

    pub fn delivery_profile(&self, name: &str) -> Option<&DeliveryProfile> {
        self.delivery_profiles.get(&name.to_lowercase())
    }

    pub fn realm(&self, name: &str) -> Option<&Realm> {
        self.realms.get(&name.to_lowercase())
    }

    pub fn default_realm(&self) -> Option<&Realm> {
        self.realm(&self.settings.default_realm)
    }

    pub fn source(&self, name: &str) -> Option<&Arc<dyn UserSource>> {
        self.sources.get(&name.to_lowercase())
    }

    pub fn application(&self, name: &AppName) -> Option<&Application> {
        self.applications.get(&name.0.to_lowercase())
    }

    /// The realm a user of `source` belongs to when no realm was named: the default realm if it
    /// lists the source, else the first realm that does.
    pub fn realm_of_source(&self, source: &str) -> Option<RealmName> {
        let lists = |r: &Realm| r.sources.iter().any(|s| s.0.eq_ignore_ascii_case(source));
        if let Some(r) = self.default_realm().filter(|r| lists(r)) {
            return Some(r.name.clone());
        }
        self.realms
            .values()
            .find(|r| lists(r))
            .map(|r| r.name.clone())
    }

    /// Splits what the user typed into login name and realm (seed 002's "split at @": only when
    /// the part after the last `@` names a realm, so e-mail addresses still work as logins).
    pub fn split_login(&self, user: &str, realm: Option<&str>) -> (String, Option<String>) {
        if let Some(r) = realm.filter(|r| !r.is_empty()) {
            return (user.to_string(), Some(r.to_string()));
        }
        if self.settings.split_at_sign
            && let Some((login, r)) = user.rsplit_once('@')
            && !login.is_empty()
            && self.realm(r).is_some()
        {
            return (login.to_string(), Some(r.to_string()));
        }
        (user.to_string(), None)
    }
}
