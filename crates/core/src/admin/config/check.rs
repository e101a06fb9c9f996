//! The consistency check of a whole configuration: every object valid, names unique, every
//! reference resolvable, settings valid — every problem reported at once.

use super::Admin;
use super::Declaration;
use crate::model::{AppKind, Method};
use crate::settings::SystemSettings;
use std::collections::BTreeMap;

impl Admin {
    /// Checks a complete configuration for consistency: every object valid, names unique,
    /// every reference resolvable, settings valid. Reports every problem.
    pub(super) fn check_declaration(&self, decl: &Declaration) -> Vec<String> {
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
}
