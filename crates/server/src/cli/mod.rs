//! The `tessera` command line: `serve`, and management commands that work on the same data as a
//! running server (same `--data-dir`, `--database-url`, `TESSERA_*`); a running server picks
//! their changes up without a restart.

mod client_cmds;
mod config_cmds;
mod encryption_cmds;
mod ldap_cmds;
mod migrate_cmds;
mod oidc_cmds;
mod outbox_cmds;
mod response_cmds;
pub(crate) mod saml_cmds;
mod session_cmds;
mod token_cmds;
mod user_cmds;

use crate::app;
use crate::config::{Config, Overrides};
use crate::output::Out;
use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::{BufRead, IsTerminal};
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

/// The heading of the options every command takes, apart from each command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Args)]
pub struct Global {
    /// TOML configuration file (also TESSERA_CONFIG).
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,
    /// Data directory: embedded database and master key (default ./data).
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub data_dir: Option<String>,
    /// sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, value_name = "URL", help_heading = GLOBAL)]
    pub database_url: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
}

/// The command line's definition as `--help` shows it: `serve` prints no tables, so it does not
/// offer `--json` (its log format is `--log-format`).
pub fn command() -> clap::Command {
    // A subcommand's own argument of the same id keeps the global one away from it.
    Cli::command().mut_subcommand("serve", |serve| {
        serve.arg(
            clap::Arg::new("json")
                .long("json")
                .action(clap::ArgAction::SetTrue)
                .hide(true),
        )
    })
}

/// Parses the process's arguments (`--help` and errors exit here, as clap does).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
    /// Move tokens from another server (privacyIDEA, eduMFA).
    #[command(subcommand)]
    Migrate(migrate_cmds::MigrateCmd),
    /// privacyIDEA-style signatures on the validate API's answers: the signing key.
    #[command(subcommand)]
    ResponseSigning(response_cmds::ResponseCmd),
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
    /// The log's format: `text` (coloured on a terminal only) or `json` (one object per
    /// line, for log shippers) (also TESSERA_LOG_FORMAT, `log.format` in the file).
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Where Prometheus reads /metrics, or `off` (default 127.0.0.1:9464; also
    /// TESSERA_METRICS_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create an administrator (or a service account for /validate/triggerchallenge).
    Create {
        /// The administrator's name.
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
        /// The administrator's name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete an administrator.
    Delete {
        /// The administrator's name.
        name: String,
    },
    /// Lift the lock of an administrator's sign-ins after too many wrong passwords (from every
    /// address) and forget the failed attempts.
    Unlock {
        /// The administrator's name.
        name: String,
    },
}

/// A new password: given as a flag (visible to other local users in the process list), read
/// from standard input, or asked for at the terminal.
#[derive(Debug, Args, Default)]
pub struct PasswordArgs {
    /// The password (prefer --password-stdin: flags are visible in the process list).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input: asked for (twice, not shown) at a terminal,
    /// else the first line.
    #[arg(long)]
    pub password_stdin: bool,
}

impl PasswordArgs {
    pub fn read(&self) -> Result<Option<Zeroizing<String>>> {
        if self.password_stdin {
            return Ok(Some(read_secret("new password", true)?));
        }
        Ok(self.password.clone().map(Zeroizing::new))
    }

    /// The password, asked for at a terminal when no flag gives it.
    pub fn required(&self, what: &str) -> Result<Zeroizing<String>> {
        match self.read()? {
            Some(p) => Ok(p),
            None if std::io::stdin().is_terminal() => read_secret("new password", true),
            None => bail!("{what}: give --password-stdin (recommended) or --password"),
        }
    }
}

/// A secret read from standard input: at a terminal, asked for with a prompt and not shown as
/// it is typed (twice when `confirm`, for a new secret); otherwise the first line.
pub fn read_secret(what: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        ask_secret(what, confirm)
    } else {
        read_stdin_line(what)
    }
}

/// Asks at the terminal (up to three times when the answers are empty or differ).
fn ask_secret(what: &str, confirm: bool) -> Result<Zeroizing<String>> {
    let mut first_letter = what.chars();
    let label = match first_letter.next() {
        Some(c) => format!("{}{}", c.to_uppercase(), first_letter.as_str()),
        None => String::new(),
    };
    let ask = |prompt: &str| -> Result<Zeroizing<String>> {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .with_context(|| format!("cannot read the {what} from the terminal"))
    };
    for _ in 0..3 {
        let typed = ask(&format!("{label} (not shown as you type): "))?;
        if typed.is_empty() {
            eprintln!("The {what} cannot be empty.");
            continue;
        }
        if !confirm {
            return Ok(typed);
        }
        let again = ask(&format!("Type the {what} again: "))?;
        if *again == *typed {
            return Ok(typed);
        }
        eprintln!("The two did not match. Try again.");
    }
    bail!("no {what} given")
}

/// The first line of standard input, without its line end; at a terminal, a prompt says what
/// to type (what is typed is shown: use [`read_secret`] for secrets).
pub fn read_stdin_line(what: &str) -> Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        eprint!("Type {what}, then Enter: ");
    }
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

/// All of standard input; at a terminal, a line first says how to end it.
pub fn read_stdin_all(what: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        eprintln!("Paste {what}, then press Ctrl-D on a line of its own:");
    }
    std::io::read_to_string(std::io::stdin()).context("reading standard input")
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
        log_format: serve.and_then(|s| s.log_format.clone()),
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
        if cli.global.json {
            bail!(
                "serve prints no tables: --json is for the other commands (for a log in JSON lines, give --log-format json)"
            );
        }
        let config = load_config(&cli.global, Some(args))?;
        crate::init_logging(&config);
        let running = crate::serve::start(&config, Arc::new(SystemClock)).await?;
        crate::serve::default_public_url(&running);
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
        Command::ResponseSigning(cmd) => response_cmds::run(app, out, cmd).await,
        Command::Migrate(cmd) => migrate_cmds::run(app, out, cmd).await,
        Command::Saml(cmd) => saml_cmds::run(app, out, cmd).await,
        Command::Apply(args) => config_cmds::apply(app, out, args).await,
        Command::Export(args) => config_cmds::export(app, out, args).await,
    }
}
