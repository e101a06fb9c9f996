//! Configuration objects (user sources, realms, applications), settings, the declarative
//! file of `tessera apply`/`tessera export`, and the defaults of a new installation.

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::ids::{AppName, RealmName, SourceName};
use crate::model::app::{source_from_stored, source_to_stored};
use crate::model::client::{client_from_stored, client_to_stored};
use crate::model::delivery::{DeliveryProfile, delivery_from_stored, delivery_to_stored};
use crate::model::{AppKind, Application, Factor, Method, RadiusClient, Realm, UserSourceDef};
use crate::settings::SystemSettings;
use crate::store::{ConfigKind, Store, StoreResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

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

/// Creates the objects a new installation starts with, once: the local user source, the
/// `default` realm searching it, and the `default` application (one factor: soft OTP with the
/// token PIN, as privacyIDEA's `/validate/check` behaves).
pub async fn bootstrap_defaults(store: &dyn Store, now: i64) -> StoreResult<bool> {
    if store.meta("bootstrapped").await?.is_some() {
        return Ok(false);
    }
    let source = UserSourceDef {
        description: "Users kept in Tessera".into(),
        ..UserSourceDef::local("local")
    };
    let realm = Realm {
        name: RealmName::from("default"),
        sources: vec![source.name.clone()],
        description: "The default realm".into(),
    };
    let app = Application {
        name: AppName::from("default"),
        kind: AppKind::Normal,
        description: "Token PIN + OTP, as privacyIDEA's /validate/check".into(),
        factors: vec![Factor::of(vec![Method::SoftOtp])],
        routes: Vec::new(),
        sso_session_minutes: None,
        sso_idle_minutes: None,
        branding: None,
        realms: Vec::new(),
        require_client_token: false,
        challenge_response: false,
        pass_on_no_token: false,
        passthru: false,
        pass_on_no_user: false,
    };
    let to_value = |v: serde_json::Result<Value>| {
        v.map_err(|e| crate::store::StoreError::Backend(e.to_string()))
    };
    store
        .put_config_doc(
            ConfigKind::UserSource,
            source.name.as_str(),
            &to_value(serde_json::to_value(&source))?,
            now,
        )
        .await?;
    store
        .put_config_doc(
            ConfigKind::Realm,
            realm.name.as_str(),
            &to_value(serde_json::to_value(&realm))?,
            now,
        )
        .await?;
    store
        .put_config_doc(
            ConfigKind::Application,
            app.name.as_str(),
            &to_value(serde_json::to_value(&app))?,
            now,
        )
        .await?;
    store.set_meta("bootstrapped", &now.to_string()).await?;
    Ok(true)
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

    /// Checks a complete configuration for consistency: every object valid, names unique,
    /// every reference resolvable, settings valid. Reports every problem.
    fn check_declaration(&self, decl: &Declaration) -> Vec<String> {
        let mut errs = Vec::new();
        let mut sources = BTreeMap::new();
        for s in &decl.user_sources {
            errs.extend(
                s.problems()
                    .into_iter()
                    .map(|e| format!("user source '{}': {e}", s.name)),
            );
            let no_password = s
                .ldap
                .as_ref()
                .is_some_and(|l| l.bind_dn.is_some() && l.bind_password.is_none());
            if no_password {
                errs.push(format!(
                    "user source '{}': ldap.bind_password: a new source with a bind_dn needs its password",
                    s.name
                ));
            } else if s.problems().is_empty()
                && let Err(e) = self.engine.ports().sources.build(s)
            {
                // What only building the source finds (an unreadable ca_file, a bad certificate).
                errs.push(format!("user source '{}': {e}", s.name));
            }
            if sources.insert(s.name.0.to_lowercase(), s).is_some() {
                errs.push(format!("user source '{}' is defined twice", s.name));
            }
        }
        let mut realms = BTreeMap::new();
        for r in &decl.realms {
            errs.extend(
                r.problems()
                    .into_iter()
                    .map(|e| format!("realm '{}': {e}", r.name)),
            );
            for s in &r.sources {
                if !sources.contains_key(&s.0.to_lowercase()) {
                    errs.push(format!(
                        "realm '{}': user source '{s}' does not exist",
                        r.name
                    ));
                }
            }
            if realms.insert(r.name.0.to_lowercase(), r).is_some() {
                errs.push(format!("realm '{}' is defined twice", r.name));
            }
        }
        let mut apps = BTreeMap::new();
        for a in &decl.applications {
            errs.extend(
                a.problems()
                    .into_iter()
                    .map(|e| format!("application '{}': {e}", a.name)),
            );
            if apps.insert(a.name.0.to_lowercase(), a).is_some() {
                errs.push(format!("application '{}' is defined twice", a.name));
            }
        }
        // Routes and rules name applications and sources that must exist.
        for a in &decl.applications {
            for (i, f) in a.factors.iter().enumerate() {
                if !f.all_methods().any(|m| m == Method::ApprovedOtp) {
                    continue;
                }
                if i == 0 {
                    errs.push(format!(
                        "application '{}': factors[0]: approved_otp must follow a factor that proves who signs in (in information mode it proves nothing)",
                        a.name
                    ));
                }
                if f.all_methods().count() > 1 {
                    errs.push(format!(
                        "application '{}': factors[{i}]: approved_otp stands alone in its factor",
                        a.name
                    ));
                }
            }

            for r in &a.realms {
                if !realms.contains_key(&r.0.to_lowercase()) {
                    errs.push(format!(
                        "application '{}': realms: realm '{r}' does not exist",
                        a.name
                    ));
                }
            }
            for (j, r) in a.routes.iter().enumerate() {
                match apps.get(&r.application.0.to_lowercase()) {
                    None => errs.push(format!(
                        "application '{}': routes[{j}]: application '{}' does not exist",
                        a.name, r.application
                    )),
                    Some(target) if target.kind != AppKind::Normal => errs.push(format!(
                        "application '{}': routes[{j}]: '{}' is a {} application; routes lead to normal ones",
                        a.name,
                        r.application,
                        target.kind.as_str()
                    )),
                    Some(_) => {}
                }
            }
            let conditions = a.routes.iter().map(|r| &r.when).chain(
                a.factors
                    .iter()
                    .flat_map(|f| f.rules.iter().map(|r| &r.when)),
            );
            for c in conditions {
                if let Some(s) = &c.source
                    && !sources.contains_key(&s.0.to_lowercase())
                {
                    errs.push(format!(
                        "application '{}': a rule names user source '{s}', which does not exist",
                        a.name
                    ));
                }
            }
        }
        let mut clients = BTreeMap::new();
        for c in &decl.radius_clients {
            let label = format!("RADIUS client '{}'", c.name);
            errs.extend(c.problems().into_iter().map(|e| format!("{label}: {e}")));
            if c.secret.is_none() {
                errs.push(format!(
                    "{label}: secret: a new client needs its shared secret"
                ));
            }
            if clients.insert(c.name.to_lowercase(), c).is_some() {
                errs.push(format!("{label} is defined twice"));
            }
            let apps_named = c
                .application
                .iter()
                .chain(c.application_rules.iter().map(|r| &r.application));
            for a in apps_named {
                if !apps.contains_key(&a.0.to_lowercase()) {
                    errs.push(format!("{label}: application '{a}' does not exist"));
                }
            }
            if let Some(check) = &self.attributes {
                for (i, r) in c.reply_rules.iter().enumerate() {
                    if let Err(e) = check.check_reply(&r.reply_attribute, r.value.as_deref()) {
                        errs.push(format!("{label}: reply_rules[{i}]: {e}"));
                    }
                }
                for (i, r) in c.application_rules.iter().enumerate() {
                    if let Some(a) = &r.attribute
                        && let Err(e) = check.check_request(a)
                    {
                        errs.push(format!("{label}: application_rules[{i}]: {e}"));
                    }
                }
            }
        }
        // Check the references of the valid settings even when others are invalid.
        let settings = match SystemSettings::default().merged(&decl.settings) {
            Ok(s) => s,
            Err(es) => {
                let mut valid = decl.settings.clone();
                for e in &es {
                    valid.remove(&e.key);
                }
                errs.extend(es.into_iter().map(|e| format!("setting {e}")));
                SystemSettings::default().merged(&valid).unwrap_or_default()
            }
        };
        for a in &decl.applications {
            let links = a
                .factors
                .iter()
                .any(|f| f.all_methods().any(Method::is_link));
            if links && settings.public_url.is_empty() {
                errs.push(format!(
                    "application '{}': links (email_link, approved_otp) need the public_url setting",
                    a.name
                ));
            }
        }
        let mut api_clients = BTreeMap::new();
        let mut client_ids = BTreeMap::new();
        for c in &decl.api_clients {
            let label = format!("API client '{}'", c.name);
            errs.extend(c.problems().into_iter().map(|e| format!("{label}: {e}")));
            if c.secret_hash.is_none() && !c.public {
                errs.push(format!(
                    "{label}: no secret (create it with `tessera client add api`, which shows the secret once)"
                ));
            }
            if let Some(a) = &c.application
                && !apps.contains_key(&a.0.to_lowercase())
            {
                errs.push(format!("{label}: application '{a}' does not exist"));
            }
            if api_clients.insert(c.name.to_lowercase(), c).is_some() {
                errs.push(format!("{label} is defined twice"));
            }
            if client_ids.insert(c.client_id.clone(), c).is_some() {
                errs.push(format!(
                    "{label}: client_id '{}' is used twice",
                    c.client_id
                ));
            }
        }
        let mut sps = BTreeMap::new();
        let mut entities = BTreeMap::new();
        for c in &decl.saml_sps {
            let label = format!("SAML service provider '{}'", c.name);
            errs.extend(c.problems().into_iter().map(|e| format!("{label}: {e}")));
            if !apps.contains_key(&c.application.0.to_lowercase()) {
                errs.push(format!(
                    "{label}: application '{}' does not exist",
                    c.application
                ));
            }
            if sps.insert(c.name.to_lowercase(), c).is_some() {
                errs.push(format!("{label} is defined twice"));
            }
            if entities.insert(c.entity_id.clone(), c).is_some() {
                errs.push(format!(
                    "{label}: entity_id '{}' is used twice",
                    c.entity_id
                ));
            }
        }
        if !decl.saml_sps.is_empty() && settings.public_url.is_empty() {
            errs.push("SAML service providers need the public_url setting (the IdP's entity ID and addresses)".into());
        }
        let mut syslogs = BTreeMap::new();
        for p in &decl.syslog_profiles {
            let label = format!("syslog profile '{}'", p.name);
            errs.extend(p.problems().into_iter().map(|e| format!("{label}: {e}")));
            if syslogs.insert(p.name.to_lowercase(), p).is_some() {
                errs.push(format!("{label} is defined twice"));
            }
        }
        let mut profiles = BTreeMap::new();
        for p in &decl.delivery_profiles {
            let label = format!("delivery profile '{}'", p.name);
            errs.extend(p.problems().into_iter().map(|e| format!("{label}: {e}")));
            if profiles.insert(p.name.to_lowercase(), p).is_some() {
                errs.push(format!("{label} is defined twice"));
            }
        }
        for channel in crate::model::Channel::ALL {
            let key = format!("{}_delivery", channel.as_str());
            for name in settings.delivery_of(channel) {
                match profiles.get(&name.to_lowercase()) {
                    None => errs.push(format!(
                        "setting {key}: delivery profile '{name}' does not exist"
                    )),
                    Some(p) if p.is_smtp() != (channel == crate::model::Channel::Mail) => errs
                        .push(format!(
                            "setting {key}: delivery profile '{name}' is {}",
                            if p.is_smtp() {
                                "an SMTP server; SMS go through HTTP gateways"
                            } else {
                                "an HTTP gateway; mail goes through SMTP servers"
                            }
                        )),
                    Some(_) => {}
                }
            }
        }
        if !realms.contains_key(&settings.default_realm.to_lowercase()) {
            errs.push(format!(
                "setting default_realm: realm '{}' does not exist",
                settings.default_realm
            ));
        }
        if !apps.contains_key(&settings.validate_application.to_lowercase()) {
            errs.push(format!(
                "setting validate_application: application '{}' does not exist",
                settings.validate_application
            ));
        }
        if !settings.account_application.is_empty()
            && !apps.contains_key(&settings.account_application.to_lowercase())
        {
            errs.push(format!(
                "setting account_application: application '{}' does not exist (\"\" turns the account sign-in off)",
                settings.account_application
            ));
        }
        errs
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
