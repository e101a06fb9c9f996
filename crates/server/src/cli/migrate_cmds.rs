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
            dry_run,
        } => {
            let encfile_password = if encfile_password_stdin {
                Some(super::read_secret("key file password", false)?)
            } else {
                None
            };
            let mut realms = BTreeMap::new();
            for pair in realm_map {
                let (pi, tessera) = pair
                    .split_once('=')
                    .filter(|(a, b)| !a.trim().is_empty() && !b.trim().is_empty())
                    .ok_or_else(|| anyhow!("--realm-map {pair}: expected PI=TESSERA"))?;
                realms.insert(pi.trim().to_string(), tessera.trim().to_string());
            }
            let options = migrate::Options {
                config: pi_cfg,
                database_url: pi_database_url,
                encfile,
                encfile_password,
                realms,
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
