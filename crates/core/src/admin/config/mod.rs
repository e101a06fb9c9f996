//! Configuration objects (user sources, realms, applications), settings, the declarative
//! file of `tessera apply`/`tessera export`, and the defaults of a new installation.

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::ids::SourceName;
use crate::model::delivery::DeliveryProfile;
use crate::model::{Application, RadiusClient, Realm, UserSourceDef};
use crate::settings::SystemSettings;
use crate::store::ConfigKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

mod bootstrap;
mod check;
mod objects;

pub use bootstrap::bootstrap_defaults;
pub use objects::ConfigObject;

/// Everything `tessera apply` manages, as one reviewable document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// Settings that differ from the defaults.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub settings: Map<String, Value>,
    #[serde(default, rename = "user_source", skip_serializing_if = "Vec::is_empty")]
    pub user_sources: Vec<UserSourceDef>,
    #[serde(default, rename = "realm", skip_serializing_if = "Vec::is_empty")]
    pub realms: Vec<Realm>,
    #[serde(default, rename = "application", skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<Application>,
    #[serde(
        default,
        rename = "radius_client",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub radius_clients: Vec<RadiusClient>,
    #[serde(
        default,
        rename = "delivery_profile",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub delivery_profiles: Vec<DeliveryProfile>,
    #[serde(
        default,
        rename = "syslog_profile",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub syslog_profiles: Vec<crate::model::SyslogProfile>,
    #[serde(default, rename = "api_client", skip_serializing_if = "Vec::is_empty")]
    pub api_clients: Vec<crate::model::ApiClient>,
    #[serde(default, rename = "saml_sp", skip_serializing_if = "Vec::is_empty")]
    pub saml_sps: Vec<crate::model::SamlServiceProvider>,
}

impl Declaration {
    /// The same declaration without shared secrets (for files and answers that should not
    /// carry them).
    pub fn without_secrets(mut self) -> Self {
        for c in &mut self.radius_clients {
            c.secret = None;
        }
        for s in &mut self.user_sources {
            if let Some(l) = &mut s.ldap {
                l.bind_password = None;
            }
        }
        for p in &mut self.delivery_profiles {
            p.set_secret(None);
        }
        for c in &mut self.api_clients {
            c.secret_hash = None;
        }
        self
    }
}

/// One step of applying a declaration.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PlannedChange {
    Create {
        kind: String,
        name: String,
    },
    Update {
        kind: String,
        name: String,
        before: Value,
        after: Value,
    },
    Delete {
        kind: String,
        name: String,
    },
    /// In the store, not in the file; kept because pruning was not asked for.
    Keep {
        kind: String,
        name: String,
    },
    Setting {
        key: String,
        before: Value,
        after: Value,
    },
}

impl std::fmt::Display for PlannedChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlannedChange::Create { kind, name } => write!(f, "+ create {kind} '{name}'"),
            PlannedChange::Update {
                kind,
                name,
                before,
                after,
            } => write!(f, "~ update {kind} '{name}': {before} -> {after}"),
            PlannedChange::Delete { kind, name } => write!(f, "- delete {kind} '{name}'"),
            PlannedChange::Keep { kind, name } => write!(
                f,
                "  keep {kind} '{name}' (not in the file; --prune would delete it)"
            ),
            PlannedChange::Setting { key, before, after } => {
                write!(f, "~ setting {key}: {before} -> {after}")
            }
        }
    }
}

impl PlannedChange {
    pub fn is_change(&self) -> bool {
        !matches!(self, PlannedChange::Keep { .. })
    }
}

fn json<T: Serialize>(v: &T) -> AdminResult<Value> {
    serde_json::to_value(v).map_err(|e| AdminError::invalid(e.to_string()))
}

/// Runs `$body` once per kind of configuration object, with `$k` naming the kind's type, in
/// dependency order: what is named comes before what names it (sources before realms before
/// applications before the clients and profiles that name them).
macro_rules! for_each_kind {
    ($k:ident => $body:expr) => {{
        {
            type $k = UserSourceDef;
            $body;
        }
        {
            type $k = Realm;
            $body;
        }
        {
            type $k = Application;
            $body;
        }
        {
            type $k = RadiusClient;
            $body;
        }
        {
            type $k = crate::model::ApiClient;
            $body;
        }
        {
            type $k = crate::model::SamlServiceProvider;
            $body;
        }
        {
            type $k = crate::model::SyslogProfile;
            $body;
        }
        {
            type $k = DeliveryProfile;
            $body;
        }
    }};
}

impl Admin {
    /// The configuration as stored now.
    pub async fn export(&self) -> AdminResult<Declaration> {
        let store = self.engine.store();
        let mut decl = Declaration {
            settings: store.settings().await?,
            ..Declaration::default()
        };
        for_each_kind!(K => self.export_kind::<K>(&mut decl).await?);
        Ok(decl)
    }

    /// Reads the stored objects of one kind into `decl`.
    async fn export_kind<T: ConfigObject>(&self, decl: &mut Declaration) -> AdminResult<()> {
        let store = self.engine.store();
        for doc in store.config_docs(T::KIND).await? {
            let object = T::from_stored(store.as_ref(), doc.body)
                .map_err(|e| AdminError::invalid(format!("{} {}: {e}", T::LABEL, doc.name)))?;
            T::of_declaration(decl).push(object);
        }
        Ok(())
    }

    /// Stores the objects of one kind that `changes` create or update.
    async fn store_kind<T: ConfigObject>(
        &self,
        desired: &Declaration,
        changes: &[PlannedChange],
        now: i64,
    ) -> AdminResult<()> {
        let store = self.engine.store();
        for o in T::of(desired) {
            if touches(changes, T::KIND.as_str(), o.name()) {
                let body = o.to_stored(store.as_ref()).map_err(AdminError::invalid)?;
                store.put_config_doc(T::KIND, o.name(), &body, now).await?;
            }
        }
        Ok(())
    }

    /// Computes what applying `desired` changes. With `prune`, objects missing from the file
    /// are deleted; otherwise they are kept (and listed).
    pub async fn plan(
        &self,
        desired: &Declaration,
        prune: bool,
    ) -> AdminResult<Vec<PlannedChange>> {
        Ok(self.plan_filled(desired, prune).await?.0)
    }

    /// `plan`, also returning `desired` with the stored secrets of clients given without one.
    async fn plan_filled(
        &self,
        desired: &Declaration,
        prune: bool,
    ) -> AdminResult<(Vec<PlannedChange>, Declaration)> {
        let current = self.export().await?;
        // The result must be consistent: what is kept plus what the file brings.
        let mut effective = desired.clone();
        if !prune {
            for_each_kind!(K => keep_current::<K>(&current, &mut effective));
            for (k, v) in &current.settings {
                effective
                    .settings
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
        // An object given without its secret keeps the stored one (where it is still safe
        // to: see `ConfigObject::keep_stored_secret`).
        let mut desired = desired.clone();
        for_each_kind!(K => keep_stored_secrets::<K>(&current, &mut desired));
        for_each_kind!(K => keep_stored_secrets::<K>(&current, &mut effective));
        let filled = desired;
        let desired = &filled;
        let errs = self.check_declaration(&effective);
        if !errs.is_empty() {
            return Err(AdminError::Invalid(errs));
        }
        let mut changes = Vec::new();
        for_each_kind!(K => diff_kind::<K>(&current, desired, prune, &mut changes)?);
        let defaults = SystemSettings::default().to_map();
        let merged = SystemSettings::default()
            .merged(&desired.settings)
            .map_err(|es| AdminError::Invalid(es.iter().map(|e| format!("setting {e}")).collect()))?
            .to_map();
        for (key, after) in &merged {
            let before = current
                .settings
                .get(key)
                .cloned()
                .or_else(|| defaults.get(key).cloned())
                .unwrap_or(Value::Null);
            let named = desired.settings.contains_key(key);
            let stored = current.settings.contains_key(key);
            // A setting the file names is set; one it leaves out returns to its default only
            // when pruning.
            if (named || (prune && stored)) && before != *after {
                changes.push(PlannedChange::Setting {
                    key: key.clone(),
                    before,
                    after: after.clone(),
                });
            }
        }
        Ok((changes, filled))
    }

    /// Applies a declaration (after `plan` succeeded). Idempotent: applying the same file
    /// twice changes nothing the second time.
    pub async fn apply(
        &self,
        actor: &Actor,
        desired: &Declaration,
        prune: bool,
    ) -> AdminResult<Vec<PlannedChange>> {
        let (changes, desired) = self.plan_filled(desired, prune).await?;
        let desired = &desired;
        let store = self.engine.store();
        let now = self.now();
        // Create and update first, in dependency order; delete last, in reverse order.
        for_each_kind!(K => self.store_kind::<K>(desired, &changes, now).await?);
        let mut settings = Map::new();
        for c in &changes {
            if let PlannedChange::Setting { key, after, .. } = c {
                settings.insert(key.clone(), after.clone());
            }
        }
        if !settings.is_empty() {
            store.put_settings(&settings, now).await?;
        }
        for kind in [
            ConfigKind::SamlSp,
            ConfigKind::ApiClient,
            ConfigKind::SyslogProfile,
            ConfigKind::DeliveryProfile,
            ConfigKind::RadiusClient,
            ConfigKind::Application,
            ConfigKind::Realm,
            ConfigKind::UserSource,
        ] {
            for c in &changes {
                if let PlannedChange::Delete { kind: k, name } = c
                    && k == kind.as_str()
                {
                    store.delete_config_doc(kind, name).await?;
                }
            }
        }
        for c in changes.iter().filter(|c| c.is_change()) {
            self.audit(
                actor,
                "config_apply",
                Target::default(),
                "ok",
                &c.to_string(),
            )
            .await?;
        }
        self.engine.reload().await?;
        Ok(changes)
    }

    /// Creates or replaces one configuration object, checked against the rest.
    async fn put_object(
        &self,
        actor: &Actor,
        change: impl FnOnce(&mut Declaration),
    ) -> AdminResult<Vec<PlannedChange>> {
        let mut decl = self.export().await?;
        change(&mut decl);
        let changes = self.apply(actor, &decl, false).await?;
        Ok(changes)
    }

    /// All objects of a kind.
    pub fn list<T: ConfigObject>(&self) -> Vec<T> {
        T::of_snapshot(&self.engine.snapshot())
    }

    /// One object by name (case-insensitive).
    pub fn get<T: ConfigObject>(&self, name: &str) -> AdminResult<T> {
        self.list::<T>()
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| AdminError::NotFound(format!("{} '{name}'", T::LABEL)))
    }

    /// Creates or replaces an object; the whole configuration must stay consistent.
    pub async fn put<T: ConfigObject>(&self, actor: &Actor, object: T) -> AdminResult<T> {
        let name = object.name().to_string();
        self.put_object(actor, |d| {
            let slot = T::of_declaration(d);
            slot.retain(|o| !o.name().eq_ignore_ascii_case(&name));
            slot.push(object);
        })
        .await?;
        self.get::<T>(&name)
    }

    /// Deletes an object; refused while others refer to it (or, for a user source, while it
    /// holds users).
    pub async fn delete<T: ConfigObject>(&self, actor: &Actor, name: &str) -> AdminResult<()> {
        let mut decl = self.export().await?;
        let slot = T::of_declaration(&mut decl);
        let before = slot.len();
        slot.retain(|o| !o.name().eq_ignore_ascii_case(name));
        if slot.len() == before {
            return Err(AdminError::NotFound(format!("{} '{name}'", T::LABEL)));
        }
        if T::KIND == ConfigKind::UserSource {
            let users = self
                .engine
                .store()
                .count_local_users(Some(&SourceName::from(name)))
                .await?;
            if users > 0 {
                return Err(AdminError::Forbidden(format!(
                    "user source '{name}' still holds {users} user(s); delete them first"
                )));
            }
        }
        self.apply(actor, &decl, true).await?;
        Ok(())
    }

    /// All settings with their current values.
    pub fn settings(&self) -> SystemSettings {
        self.engine.snapshot().settings.clone()
    }

    /// Changes settings; every problem is reported and nothing changes on error.
    pub async fn update_settings(
        &self,
        actor: &Actor,
        changes: Map<String, Value>,
    ) -> AdminResult<SystemSettings> {
        if changes.is_empty() {
            return Err(AdminError::invalid("no settings given"));
        }
        self.put_object(actor, |d| {
            for (k, v) in changes {
                d.settings.insert(k, v);
            }
        })
        .await?;
        Ok(self.settings())
    }
}

/// Without pruning, what is kept now and the file leaves out stays.
fn keep_current<T: ConfigObject>(current: &Declaration, effective: &mut Declaration) {
    let have: Vec<String> = T::of(effective)
        .iter()
        .map(|o| o.name().to_lowercase())
        .collect();
    for o in T::of(current) {
        if !have.contains(&o.name().to_lowercase()) {
            T::of_declaration(effective).push(o.clone());
        }
    }
}

/// The objects of `decl` given without their secret keep the stored ones.
fn keep_stored_secrets<T: ConfigObject>(current: &Declaration, decl: &mut Declaration) {
    for o in T::of_declaration(decl) {
        if let Some(stored) = T::of(current)
            .iter()
            .find(|k| k.name().eq_ignore_ascii_case(o.name()))
        {
            o.keep_stored_secret(stored);
        }
    }
}

/// The changes of one kind.
fn diff_kind<T: ConfigObject>(
    current: &Declaration,
    desired: &Declaration,
    prune: bool,
    out: &mut Vec<PlannedChange>,
) -> AdminResult<()> {
    diff(
        T::KIND.as_str(),
        T::of(current),
        T::of(desired),
        |o| o.name().to_string(),
        prune,
        out,
    )
}

fn touches(changes: &[PlannedChange], kind: &str, name: &str) -> bool {
    changes.iter().any(|c| match c {
        PlannedChange::Create { kind: k, name: n }
        | PlannedChange::Update {
            kind: k, name: n, ..
        } => k == kind && n.eq_ignore_ascii_case(name),
        _ => false,
    })
}

/// The JSON of an object for a change listing: shared secrets are never shown; a changed one
/// is marked.
fn redacted(before: &mut Value, after: &mut Value) {
    let (Some(b), Some(a)) = (before.as_object_mut(), after.as_object_mut()) else {
        return;
    };
    // RADIUS shared secrets, gateway secrets, SMTP passwords.
    for key in ["secret", "password"] {
        let (sb, sa) = (b.remove(key), a.remove(key));
        if sb != sa {
            b.insert(key.into(), Value::String("***".into()));
            a.insert(key.into(), Value::String("*** (changed)".into()));
        }
    }
    // An LDAP bind password, on either side (also when the type of the source changed).
    let take = |o: &mut Map<String, Value>| {
        o.get_mut("ldap")
            .and_then(Value::as_object_mut)
            .and_then(|l| l.remove("bind_password"))
    };
    let (pb, pa) = (take(b), take(a));
    // API clients' secret hashes: not secret, but not shown either.
    let (hb, ha) = (b.remove("secret_hash"), a.remove("secret_hash"));
    if hb != ha {
        b.insert("secret_hash".into(), Value::String("***".into()));
        a.insert("secret_hash".into(), Value::String("*** (changed)".into()));
    }
    if pb != pa {
        for (side, mark) in [(b, "***"), (a, "*** (changed)")] {
            if let Some(l) = side.get_mut("ldap").and_then(Value::as_object_mut) {
                l.insert("bind_password".into(), Value::String(mark.into()));
            }
        }
    }
}

fn diff<T: Serialize>(
    kind: &str,
    current: &[T],
    desired: &[T],
    name: impl Fn(&T) -> String,
    prune: bool,
    out: &mut Vec<PlannedChange>,
) -> AdminResult<()> {
    let cur: BTreeMap<String, &T> = current
        .iter()
        .map(|t| (name(t).to_lowercase(), t))
        .collect();
    let des: BTreeMap<String, &T> = desired
        .iter()
        .map(|t| (name(t).to_lowercase(), t))
        .collect();
    for (key, d) in &des {
        match cur.get(key) {
            None => out.push(PlannedChange::Create {
                kind: kind.into(),
                name: name(d),
            }),
            Some(c) => {
                let (mut before, mut after) = (json(c)?, json(d)?);
                if before != after {
                    redacted(&mut before, &mut after);
                    out.push(PlannedChange::Update {
                        kind: kind.into(),
                        name: name(d),
                        before,
                        after,
                    });
                }
            }
        }
    }
    for (key, c) in &cur {
        if !des.contains_key(key) {
            out.push(if prune {
                PlannedChange::Delete {
                    kind: kind.into(),
                    name: name(c),
                }
            } else {
                PlannedChange::Keep {
                    kind: kind.into(),
                    name: name(c),
                }
            });
        }
    }
    Ok(())
}
