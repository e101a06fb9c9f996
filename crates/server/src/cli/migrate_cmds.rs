//! `tessera migrate …`: moving from another server.

use crate::app::App;
use crate::migrate::{self, Report};
use crate::output::{Out, table};
use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tessera_core::admin::Actor;

#[derive(Debug, Subcommand)]
pub enum MigrateCmd {
    /// Move the tokens of a privacyIDEA 3.x or eduMFA installation into Tessera: HOTP and TOTP
    /// tokens with their seeds, counters (codes used before stay used), fail counts, fail
    /// limits, descriptions, states, PINs (checked as privacyIDEA hashed them, re-hashed at the
    /// next sign-in) and owners; the numbers and addresses of SMS and mail tokens go to their
    /// users. Reads the installation (pi.cfg, its key file, its database) and writes nothing to
    /// it. Run with --dry-run first; running again skips the tokens moved already.
    Privacyidea {
        /// The installation's configuration file (eduMFA: edumfa.cfg).
        #[arg(value_name = "PI_CFG", default_value = "/etc/privacyidea/pi.cfg")]
        pi_cfg: PathBuf,
        /// The installation's database, instead of the configuration's SQLALCHEMY_DATABASE_URI
        /// (an SQLAlchemy URL: sqlite:////path, postgresql://user:password@host/db).
        #[arg(long = "pi-database-url", value_name = "URL")]
        pi_database_url: Option<String>,
        /// The encryption key file, instead of the configuration's PI_ENCFILE.
        #[arg(long)]
        encfile: Option<PathBuf>,
        /// Read the password of an encrypted key file (pi-manage setup encrypt_enckey) from
        /// standard input (asked for, not shown, at a terminal).
        #[arg(long)]
        encfile_password_stdin: bool,
        /// A privacyIDEA realm and the Tessera realm its users are in, as PI=TESSERA (repeat for
        /// several); realms not named keep their name.
        #[arg(long = "realm-map", value_name = "PI=TESSERA")]
        realm_map: Vec<String>,
        /// A privacyIDEA LDAP resolver and the Tessera user source that already holds its
        /// users, as RESOLVER=SOURCE (repeat); a resolver not named becomes the LDAP source
        /// pi-RESOLVER with its settings, unless the realm finds its users already.
        #[arg(long = "resolver-map", value_name = "RESOLVER=SOURCE")]
        resolver_map: Vec<String>,
        /// A mapping file (TOML) with a [realms] table (privacyIDEA realm = Tessera realm) and a
        /// [resolvers] table (LDAP resolver = Tessera user source); --realm-map and
        /// --resolver-map given beside it win.
        #[arg(long, value_name = "FILE")]
        map: Option<PathBuf>,
        /// Check everything and report, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(app: &App, out: Out, cmd: MigrateCmd) -> Result<()> {
    match cmd {
        MigrateCmd::Privacyidea {
            pi_cfg,
            pi_database_url,
            encfile,
            encfile_password_stdin,
            realm_map,
            resolver_map,
            map,
            dry_run,
        } => {
            let encfile_password = if encfile_password_stdin {
                Some(super::read_secret("key file password", false)?)
            } else {
                None
            };
            let (mut realms, mut resolvers) = match &map {
                Some(file) => read_map(file)?,
                None => (BTreeMap::new(), BTreeMap::new()),
            };
            for (flag, pairs, into) in [
                ("--realm-map", realm_map, &mut realms),
                ("--resolver-map", resolver_map, &mut resolvers),
            ] {
                for pair in pairs {
                    let (pi, tessera) = pair
                        .split_once('=')
                        .filter(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
                        .ok_or_else(|| anyhow!("{flag} {pair}: expected NAME=NAME"))?;
                    into.insert(pi.trim().to_string(), tessera.trim().to_string());
                }
            }
            let options = migrate::Options {
                config: pi_cfg,
                database_url: pi_database_url,
                encfile,
                encfile_password,
                realms,
                resolvers,
                dry_run,
            };
            let report = migrate::privacyidea(&app.admin, &Actor::cli(), &options)
                .await
                .map_err(|e| anyhow!(e))?;
            show(out, &report);
            if report.refused > 0 {
                bail!(
                    "{} token(s) refused: see the report (nothing was stored for them)",
                    report.refused
                );
            }
        }
    }
    Ok(())
}

/// A mapping file: `[realms]` and `[resolvers]` tables of names; anything else is refused.
type Maps = (BTreeMap<String, String>, BTreeMap<String, String>);

fn read_map(file: &std::path::Path) -> Result<Maps> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MapFile {
        #[serde(default)]
        realms: BTreeMap<String, String>,
        #[serde(default)]
        resolvers: BTreeMap<String, String>,
    }
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow!("--map {}: {e}", file.display()))?;
    let parsed: MapFile = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "--map {}: {e}(expected [realms] and [resolvers] tables of \"privacyIDEA name\" = \"Tessera name\")",
            file.display()
        )
    })?;
    for (k, v) in parsed.realms.iter().chain(&parsed.resolvers) {
        if k.trim().is_empty() || v.trim().is_empty() {
            bail!("--map {}: an empty name", file.display());
        }
    }
    Ok((parsed.realms, parsed.resolvers))
}

fn show(out: Out, report: &Report) {
    out.either(report, || {
        let rows: Vec<Vec<String>> = report
            .tokens
            .iter()
            .map(|e| {
                vec![
                    e.serial.clone(),
                    e.kind.clone(),
                    e.owner.clone().unwrap_or_else(|| "-".into()),
                    e.result.to_string(),
                    e.detail.clone(),
                ]
            })
            .collect();
        table(&["serial", "type", "owner", "result", "detail"], &rows);
        outln!(
            "\n{} {}, {} in Tessera already, {} refused.",
            report.imported,
            if report.dry_run {
                "would be imported (dry run: nothing was stored)"
            } else {
                "imported"
            },
            report.exists,
            report.refused
        );
        if !report.sources.is_empty() {
            outln!("\nUser sources and realms:");
            for line in &report.sources {
                outln!("  - {line}");
            }
        }
        if !report.not_migrated.is_empty() {
            outln!("\nNot migrated:");
            for line in &report.not_migrated {
                outln!("  - {line}");
            }
        }
        if !report.ldap_sources.is_empty() {
            let mut sources = report.ldap_sources.clone();
            sources.iter_mut().for_each(strip_nulls);
            let file = serde_json::json!({ "user_source": sources });
            if let Ok(text) = toml::to_string(&file) {
                outln!(
                    "\nTessera LDAP user sources with the LDAP resolvers' settings (add bind_password, put\nthem in the realms' sources, then tessera apply FILE):\n"
                );
                out!("{text}");
            }
        }
    });
}

/// TOML has no null: leave such keys out.
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
