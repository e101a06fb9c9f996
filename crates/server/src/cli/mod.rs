//! The `tessera` command line: `serve`, and management commands that work on the same data as a
//! running server (same `--data-dir`, `--database-url`, `TESSERA_*`); a running server picks
//! their changes up without a restart.

mod client_cmds;
mod config_cmds;
mod encryption_cmds;
mod ldap_cmds;
mod oidc_cmds;
mod outbox_cmds;
pub(crate) mod saml_cmds;
mod session_cmds;
mod token_cmds;
mod user_cmds;

use crate::app;
use crate::config::{Config, Overrides};
use crate::output::Out;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use tessera_core::clock::SystemClock;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera multi-factor authentication server"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// TOML configuration file (also TESSERA_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory: embedded database and master key (default ./data).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Administrator accounts (admin API and /auth).
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Local users.
    #[command(subcommand)]
    User(user_cmds::UserCmd),
    /// Authenticators (HOTP/TOTP tokens).
    #[command(subcommand)]
    Token(token_cmds::TokenCmd),
    /// Clients: RADIUS network access servers (VPNs, firewalls, switches, Wi-Fi controllers).
    #[command(subcommand)]
    Client(client_cmds::ClientCmd),
    /// Applications (authentication profiles with their factor chains).
    #[command(subcommand)]
    App(config_cmds::AppCmd),
    /// Realms (ordered lists of user sources).
    #[command(subcommand)]
    Realm(config_cmds::RealmCmd),
    /// User sources (where users live).
    #[command(subcommand)]
    Source(config_cmds::SourceCmd),
    /// LDAP and Active Directory user sources: `tessera ldap test PROFILE [USER]`.
    #[command(subcommand)]
    Ldap(ldap_cmds::LdapCmd),
    /// System settings (lockout, token defaults, PIN position, ...).
    #[command(subcommand)]
    Settings(config_cmds::SettingsCmd),
    /// Read the audit log, newest first.
    Audit(config_cmds::AuditArgs),
    /// Messages (SMS, mail) waiting to be sent or given up; `--all` includes the sent ones.
    Outbox(outbox_cmds::OutboxArgs),
    /// Payload encryption: the public key, and a helper that seals a request body.
    #[command(subcommand)]
    Encryption(encryption_cmds::EncryptionCmd),
    /// Web SSO sessions of a user: list them, end one or all.
    #[command(subcommand)]
    Session(session_cmds::SessionCmd),
    /// OpenID Connect: the RS256 key of ID tokens.
    #[command(subcommand)]
    Oidc(oidc_cmds::OidcCmd),
    /// SAML 2.0: the identity provider's signing key, and the service providers.
    #[command(subcommand)]
    Saml(saml_cmds::SamlCmd),
    /// Apply a declarative configuration file (realms, user sources, applications, settings).
    Apply(config_cmds::ApplyArgs),
    /// Print the configuration as a declarative file.
    Export(config_cmds::ExportArgs),
    /// Check the process configuration and print it.
    CheckConfig,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTP listen address; port 0 picks a free port (also TESSERA_HTTP_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// RADIUS authentication address (UDP); accounting listens on the next port unless
    /// --radius-acct-listen is given (also TESSERA_RADIUS_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub radius_listen: Option<String>,
    /// RADIUS accounting address (UDP) (also TESSERA_RADIUS_ACCT_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub radius_acct_listen: Option<String>,
    /// Where Prometheus reads /metrics, or `off` (default 127.0.0.1:9464; also
    /// TESSERA_METRICS_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create an administrator (or a service account for /validate/triggerchallenge).
    Create {
        name: String,
        /// admin (everything), auditor (read only) or service (trigger challenges only).
        #[arg(long, default_value = "admin")]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List administrators.
    List,
    /// Change an administrator's password (ends the account's sessions).
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete an administrator.
    Delete { name: String },
    /// Lift the lock of an administrator's sign-ins after too many wrong passwords (from every
    /// address) and forget the failed attempts.
    Unlock { name: String },
}

/// A secret given as a flag (visible to other local users in the process list) or on stdin.
#[derive(Debug, Args, Default)]
pub struct PasswordArgs {
    /// The password (prefer --password-stdin: flags are visible in the process list).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

impl PasswordArgs {
    pub fn read(&self) -> Result<Option<Zeroizing<String>>> {
        if self.password_stdin {
            return Ok(Some(read_stdin_line("password")?));
        }
        Ok(self.password.clone().map(Zeroizing::new))
    }

    pub fn required(&self, what: &str) -> Result<Zeroizing<String>> {
        match self.read()? {
            Some(p) => Ok(p),
            None => bail!("{what}: give --password-stdin (recommended) or --password"),
        }
    }
}

pub fn read_stdin_line(what: &str) -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    if trimmed.is_empty() {
        bail!("the {what} read from standard input is empty");
    }
    Ok(trimmed)
}

/// Loads the configuration, reporting every problem.
pub fn load_config(global: &Global, serve: Option<&ServeArgs>) -> Result<Config> {
    let overrides = Overrides {
        config_file: global.config.clone(),
        data_dir: global.data_dir.clone(),
        database_url: global.database_url.clone(),
        http_listen: serve.and_then(|s| s.http_listen.clone()),
        radius_listen: serve.and_then(|s| s.radius_listen.clone()),
        radius_acct_listen: serve.and_then(|s| s.radius_acct_listen.clone()),
        metrics_listen: serve.and_then(|s| s.metrics_listen.clone()),
    };
    Config::load(&overrides).map_err(|errors| {
        anyhow::anyhow!(
            "the configuration has {} problem(s):\n  - {}",
            errors.len(),
            errors.join("\n  - ")
        )
    })
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let out = Out {
        json: cli.global.json,
    };
    if let Command::Serve(args) = &cli.command {
        let config = load_config(&cli.global, Some(args))?;
        crate::init_logging(&config);
        let running = crate::serve::start(&config, Arc::new(SystemClock)).await?;
        crate::serve::print_banner(&config, &running).await?;
        return running.run_until(crate::serve::shutdown_signal()).await;
    }
    let config = load_config(&cli.global, None)?;
    if let Command::CheckConfig = &cli.command {
        outln!("configuration is valid");
        crate::output::fields(&[
            ("data_dir", config.data_dir.display().to_string()),
            ("database_url", config.redacted_database_url()),
            (
                "master_key_file",
                config.master_key_file.display().to_string(),
            ),
            ("http.listen", config.http_listen.to_string()),
            (
                "radius.listen",
                match config.radius {
                    Some((auth, acct)) => format!("{auth} (accounting {acct})"),
                    None => "off".into(),
                },
            ),
            (
                "radsec.listen",
                config
                    .radsec
                    .as_ref()
                    .map(|r| r.listen.to_string())
                    .unwrap_or_else(|| "off".into()),
            ),
            (
                "metrics.listen",
                config
                    .metrics_listen
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "off".into()),
            ),
            (
                "metrics on the HTTP listener",
                match config.metrics_token {
                    Some(_) => "with the metrics token".into(),
                    None => "no (no metrics token)".into(),
                },
            ),
            ("log.level", config.log_level.clone()),
        ]);
        return Ok(());
    }
    crate::init_cli_logging();
    let app = app::open(&config, Arc::new(SystemClock)).await?;
    if app.key_created {
        eprintln!(
            "Created the master key {} (mode 0600). Back it up apart from the database.",
            config.master_key_file.display()
        );
    }
    let result = dispatch(&app, out, cli.command).await;
    app.store.close().await;
    result
}

async fn dispatch(app: &app::App, out: Out, command: Command) -> Result<()> {
    match command {
        Command::Serve(_) | Command::CheckConfig => Ok(()),
        Command::Admin(cmd) => config_cmds::admin(app, out, cmd).await,
        Command::User(cmd) => user_cmds::run(app, out, cmd).await,
        Command::Token(cmd) => token_cmds::run(app, out, cmd).await,
        Command::App(cmd) => config_cmds::app(app, out, cmd).await,
        Command::Client(cmd) => client_cmds::run(app, out, cmd).await,
        Command::Realm(cmd) => config_cmds::realm(app, out, cmd).await,
        Command::Source(cmd) => config_cmds::source(app, out, cmd).await,
        Command::Ldap(cmd) => ldap_cmds::run(app, out, cmd).await,
        Command::Settings(cmd) => config_cmds::settings(app, out, cmd).await,
        Command::Audit(args) => config_cmds::audit(app, out, args).await,
        Command::Outbox(args) => outbox_cmds::run(app, out, args).await,
        Command::Encryption(cmd) => encryption_cmds::run(app, out, cmd).await,
        Command::Session(cmd) => session_cmds::run(app, out, cmd).await,
        Command::Oidc(cmd) => oidc_cmds::run(app, out, cmd).await,
        Command::Saml(cmd) => saml_cmds::run(app, out, cmd).await,
        Command::Apply(args) => config_cmds::apply(app, out, args).await,
        Command::Export(args) => config_cmds::export(app, out, args).await,
    }
}
