//! `tessera ldap …`: checking an LDAP/Active Directory user source.

use crate::app::App;
use crate::output::{Out, fields};
use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;
use tessera_core::model::{User, UserSourceDef, UserSourceKind};
use tessera_directory::LdapSource;

#[derive(Debug, Subcommand)]
pub enum LdapCmd {
    /// Connect to each server of an LDAP user source, bind the service account and, with USER,
    /// find the user and print the mapped attributes and groups. Exits non-zero when a check
    /// fails.
    Test {
        /// The user source (its name in `tessera source list`).
        profile: String,
        /// A login name to look up.
        user: Option<String>,
    },
}

pub async fn run(app: &App, out: Out, cmd: LdapCmd) -> Result<()> {
    match cmd {
        LdapCmd::Test { profile, user } => test(app, out, &profile, user.as_deref()).await,
    }
}

async fn test(app: &App, out: Out, profile: &str, user: Option<&str>) -> Result<()> {
    let def = app.admin.get::<UserSourceDef>(profile)?;
    if def.kind != UserSourceKind::Ldap {
        bail!(
            "user source '{}' is a {} source, not an LDAP one",
            def.name,
            def.kind.as_str()
        );
    }
    let source =
        LdapSource::new(&def).map_err(|e| anyhow::anyhow!("user source '{}': {e}", def.name))?;
    let report = source.test(user).await;
    let ldap = def.ldap.as_ref();
    let bound_as = ldap
        .and_then(|l| l.bind_dn.clone())
        .unwrap_or_else(|| "anonymous".into());
    let servers_ok = report.servers.iter().any(|(_, r)| r.is_ok());
    let user_json = match &report.user {
        None => json!(null),
        Some(Ok(Some(u))) => user_json(u),
        Some(Ok(None)) => json!({"found": false}),
        Some(Err(e)) => json!({"error": e}),
    };
    let value = json!({
        "source": def.name.0,
        "directory": ldap.map(|l| l.directory.as_str()),
        "bind": bound_as,
        "servers": report.servers.iter().map(|(url, r)| match r {
            Ok(d) => json!({"server": url, "ok": true, "millis": d.as_millis() as u64}),
            Err(e) => json!({"server": url, "ok": false, "error": e}),
        }).collect::<Vec<_>>(),
        "user": user_json,
    });
    out.either(&value, || {
        outln!(
            "User source '{}' ({}), servers in the order they are tried:",
            def.name,
            ldap.map(|l| l.directory.as_str()).unwrap_or("")
        );
        for (url, r) in &report.servers {
            match r {
                Ok(d) => outln!(
                    "  {url}: ok, connected and bound as {bound_as} in {} ms",
                    d.as_millis()
                ),
                Err(e) => outln!("  {url}: FAILED: {e}"),
            }
        }
        match (&report.user, user) {
            (Some(Ok(Some(u))), _) => {
                outln!("User '{}' found:", u.username);
                let one = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                let mut rows = vec![
                    (
                        "dn",
                        u.attributes
                            .get("dn")
                            .and_then(|v| v.first().cloned())
                            .unwrap_or_default(),
                    ),
                    ("id", u.id.0.clone()),
                    ("username", u.username.clone()),
                    ("given_name", one(&u.given_name)),
                    ("surname", one(&u.surname)),
                    ("mail", one(&u.email)),
                    ("phone", one(&u.phone)),
                    ("manager", one(&u.manager)),
                    (
                        "enabled",
                        if u.enabled { "yes" } else { "no (disabled in the directory)" }.into(),
                    ),
                    ("groups", u.groups.join(", ")),
                ];
                let extra: Vec<(String, String)> = u
                    .attributes
                    .iter()
                    .filter(|(k, _)| k.as_str() != "dn" && k.as_str() != "memberof")
                    .map(|(k, v)| (k.clone(), v.join(", ")))
                    .collect();
                for (k, v) in &extra {
                    rows.push((k.as_str(), v.clone()));
                }
                fields(&rows);
            }
            (Some(Ok(None)), Some(login)) => outln!(
                "User '{login}' NOT found (login attributes, user filter and base DN decide who is found)."
            ),
            (Some(Err(e)), Some(login)) => outln!("User '{login}': lookup FAILED: {e}"),
            _ => {}
        }
    });
    if !servers_ok {
        bail!("no server of user source '{}' could be used", def.name);
    }
    match report.user {
        Some(Ok(None)) => bail!("user not found"),
        Some(Err(e)) => bail!("user lookup failed: {e}"),
        _ => Ok(()),
    }
}

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "found": true,
        "id": u.id.0,
        "username": u.username,
        "given_name": u.given_name,
        "surname": u.surname,
        "mail": u.email,
        "phone": u.phone,
        "manager": u.manager,
        "enabled": u.enabled,
        "groups": u.groups,
        "attributes": u.attributes,
    })
}
