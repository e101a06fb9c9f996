//! `tessera admin|app|realm|source|settings|audit|apply|export`

use super::PasswordArgs;
use crate::app::App;
use crate::output::{Out, fields, parse_date, parse_duration, table};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use std::path::PathBuf;
use tessera_core::admin::{Actor, Declaration, PlannedChange};
use tessera_core::ids::{AppName, RealmName, SourceName};
use tessera_core::model::{
    AdminRole, AppKind, Application, AuditQuery, Factor, Method, Realm, UserSourceDef,
    UserSourceKind,
};
use time::OffsetDateTime;

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// List applications.
    List,
    /// Show an application.
    Show {
        /// The application's name.
        name: String,
    },
    /// Create an application.
    Add(AppArgs),
    /// Change an application: the options given replace what it has (its routes, session
    /// limits and branding stay).
    Set(AppArgs),
    /// Set how the login page looks for the application's users (only what is given changes).
    Brand(BrandArgs),
    /// Delete an application.
    Delete {
        /// The application's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AppArgs {
    /// The application's name.
    name: String,
    /// A factor, in chain order (repeat; required to add). Alternatives separated by commas,
    /// e.g. `--factor password --factor soft_otp`. Methods: password, password+otp, soft_otp.
    #[arg(long = "factor")]
    factors: Vec<String>,
    /// normal (default), registration or password_reset.
    #[arg(long = "type")]
    kind: Option<String>,
    /// A note for administrators.
    #[arg(long)]
    description: Option<String>,
    /// Only users of this realm sign in (repeat for several); on `set`, replaces the list.
    #[arg(long = "realm")]
    realms: Vec<String>,
    /// On `set`: users of every realm sign in again.
    #[arg(long, conflicts_with = "realms")]
    any_realm: bool,
    /// `/validate/*` requests for the application must carry an API client's access token
    /// (scope validate) as bearer: true or false (default false; on `set`, unchanged unless
    /// given).
    #[arg(long, value_name = "BOOL")]
    require_client_token: Option<bool>,
    /// privacyIDEA's challenge_response: the token PIN alone (for password+otp, the password
    /// alone) asks for the code in a second round: true or false (default false; on `set`,
    /// unchanged unless given).
    #[arg(long, value_name = "BOOL")]
    challenge_response: Option<bool>,
    /// Rollout policy: a user with no token at all skips the factors that need one, and passes
    /// when none is left: true or false (default false).
    #[arg(long, value_name = "BOOL")]
    pass_on_no_token: Option<bool>,
    /// Rollout policy: a user with no token at all answers a first factor that needs one with
    /// the user store's password, and skips later ones: true or false (default false).
    #[arg(long, value_name = "BOOL")]
    passthru: Option<bool>,
    /// Rollout policy, dangerous: a name no user source knows passes at the validate API and
    /// over RADIUS; only when every factor needs a token: true or false (default false).
    #[arg(long, value_name = "BOOL")]
    pass_on_no_user: Option<bool>,
}

#[derive(Debug, Args)]
pub struct BrandArgs {
    /// The application's name.
    name: String,
    /// A logo file (PNG, JPEG or SVG, at most 64 KiB); `none` removes it.
    #[arg(long)]
    logo: Option<String>,
    /// The colour of buttons and focus rings (#rrggbb or #rgb); `none` removes it.
    #[arg(long)]
    primary_color: Option<String>,
    /// The page's background colour (#rrggbb or #rgb); `none` removes it.
    #[arg(long)]
    background_color: Option<String>,
    /// A text, LANG.KEY=TEXT (repeat): LANG en or tr, KEY title, intro, help, username,
    /// password, answer or continue; an empty TEXT removes it.
    #[arg(long = "text")]
    texts: Vec<String>,
    /// Remove the branding altogether.
    #[arg(long, conflicts_with_all = ["logo", "primary_color", "background_color", "texts"])]
    clear: bool,
}

/// A logo file as a data URI (the type from the file's first bytes).
fn logo_uri(file: &str) -> Result<String> {
    let bytes = std::fs::read(file).map_err(|e| anyhow!("reading {file}: {e}"))?;
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_lowercase();
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if head.contains("<svg") {
        "image/svg+xml"
    } else {
        return Err(anyhow!("{file}: not a PNG, JPEG or SVG image"));
    };
    Ok(format!(
        "data:{kind};base64,{}",
        data_encoding::BASE64.encode(&bytes)
    ))
}

impl BrandArgs {
    fn apply(&self, app: &mut Application) -> Result<()> {
        if self.clear {
            app.branding = None;
            return Ok(());
        }
        let b = app.branding.get_or_insert_with(Default::default);
        let none = |v: &str| v.eq_ignore_ascii_case("none");
        if let Some(l) = &self.logo {
            b.logo = if none(l) { None } else { Some(logo_uri(l)?) };
        }
        if let Some(c) = &self.primary_color {
            b.primary_color = (!none(c)).then(|| c.clone());
        }
        if let Some(c) = &self.background_color {
            b.background_color = (!none(c)).then(|| c.clone());
        }
        for t in &self.texts {
            let (Some((lang, key)), Some(text)) = (
                t.split_once('=').and_then(|(k, _)| k.split_once('.')),
                t.split_once('=').map(|(_, v)| v),
            ) else {
                return Err(anyhow!("--text {t}: LANG.KEY=TEXT, e.g. en.title=Contoso"));
            };
            let texts = b.texts.entry(lang.trim().to_string()).or_default();
            if text.is_empty() {
                texts.remove(key.trim());
            } else {
                texts.insert(key.trim().to_string(), text.to_string());
            }
        }
        b.texts.retain(|_, t| !t.is_empty());
        Ok(())
    }
}

impl AppArgs {
    /// The application as given; on `set`, what is not given comes from `before`.
    fn to_app(&self, before: Option<&Application>) -> Result<Application> {
        let kind: AppKind = match (&self.kind, before) {
            (Some(k), _) => serde_json::from_value(Value::String(k.clone())).map_err(|_| {
                anyhow!("--type: '{k}' must be normal, registration or password_reset")
            })?,
            (None, Some(b)) => b.kind,
            (None, None) => AppKind::default(),
        };
        if self.factors.is_empty() && before.is_none() {
            bail!("give the application's factors: --factor METHOD (repeat, in chain order)");
        }
        let mut factors = Vec::new();
        for f in &self.factors {
            let mut methods = Vec::new();
            for m in f.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                methods.push(Method::parse(m).ok_or_else(|| {
                    anyhow!("--factor: unknown method '{m}' (password, password+otp, soft_otp)")
                })?);
            }
            factors.push(Factor::of(methods));
        }
        let realms: Vec<RealmName> = self.realms.iter().map(|r| RealmName(r.clone())).collect();
        Ok(match before {
            None => Application {
                name: AppName(self.name.clone()),
                kind,
                description: self.description.clone().unwrap_or_default(),
                factors,
                routes: Vec::new(),
                sso_session_minutes: None,
                sso_idle_minutes: None,
                branding: None,
                realms,
                require_client_token: self.require_client_token.unwrap_or(false),
                challenge_response: self.challenge_response.unwrap_or(false),
                pass_on_no_token: self.pass_on_no_token.unwrap_or(false),
                passthru: self.passthru.unwrap_or(false),
                pass_on_no_user: self.pass_on_no_user.unwrap_or(false),
            },
            Some(b) => Application {
                kind,
                description: self
                    .description
                    .clone()
                    .unwrap_or_else(|| b.description.clone()),
                factors: if factors.is_empty() {
                    b.factors.clone()
                } else {
                    factors
                },
                realms: match (realms.is_empty(), self.any_realm) {
                    (_, true) => Vec::new(),
                    (true, false) => b.realms.clone(),
                    (false, false) => realms,
                },
                require_client_token: self.require_client_token.unwrap_or(b.require_client_token),
                challenge_response: self.challenge_response.unwrap_or(b.challenge_response),
                pass_on_no_token: self.pass_on_no_token.unwrap_or(b.pass_on_no_token),
                passthru: self.passthru.unwrap_or(b.passthru),
                pass_on_no_user: self.pass_on_no_user.unwrap_or(b.pass_on_no_user),
                ..b.clone()
            },
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum RealmCmd {
    /// List realms.
    List,
    /// Show a realm.
    Show {
        /// The realm's name.
        name: String,
    },
    /// Create a realm.
    Add(RealmArgs),
    /// Replace a realm's sources and description.
    Set(RealmArgs),
    /// Delete a realm.
    Delete {
        /// The realm's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct RealmArgs {
    /// The realm's name.
    name: String,
    /// A user source, in search order (repeat).
    #[arg(long = "source", required = true)]
    sources: Vec<String>,
    /// A note for administrators.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, Subcommand)]
pub enum SourceCmd {
    /// List user sources.
    List,
    /// Show a user source.
    Show {
        /// The user source's name.
        name: String,
    },
    /// Create a user source.
    Add {
        /// The user source's name.
        name: String,
        /// local (LDAP/Active Directory sources are described in a file for `tessera apply`).
        #[arg(long = "type", default_value = "local")]
        kind: String,
        /// A note for administrators.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a user source (refused while users or realms use it).
    Delete {
        /// The user source's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Show all settings, or one.
    Show {
        /// One setting's name (see `tessera settings show`).
        key: Option<String>,
    },
    /// Change settings: KEY=VALUE ... (all are checked before any is changed).
    Set {
        /// Settings to change, as KEY=VALUE (several at once are checked together).
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this user.
    #[arg(long)]
    user: Option<String>,
    /// Only records about this token.
    #[arg(long)]
    serial: Option<String>,
    /// e.g. authenticate, trigger_challenge, token_enroll, user_create, config_apply.
    #[arg(long)]
    action: Option<String>,
    /// accept, reject, challenge, ok, error.
    #[arg(long)]
    result: Option<String>,
    /// e.g. admin:root, cli:root, user.
    #[arg(long)]
    actor: Option<String>,
    /// A duration back from now (30m, 12h, 7d) or a date (YYYY-MM-DD, RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only records before this: a duration back from now (30m, 12h, 7d) or a date (YYYY-MM-DD, RFC
    /// 3339).
    #[arg(long)]
    until: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The declarative file (TOML), or - for standard input.
    file: String,
    /// Only show what would change.
    #[arg(long)]
    dry_run: bool,
    /// Delete realms, user sources and applications that are not in the file, and return
    /// settings not in the file to their defaults.
    #[arg(long)]
    prune: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Include the RADIUS shared secrets (left out by default; applying a file without them
    /// keeps the stored ones).
    #[arg(long)]
    show_secrets: bool,
}

fn factors_text(app: &Application) -> String {
    app.factors
        .iter()
        .map(|f| {
            f.methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

pub async fn admin(app: &App, out: Out, cmd: super::AdminCmd) -> Result<()> {
    let actor = Actor::cli();
    match cmd {
        super::AdminCmd::Create {
            name,
            role,
            password,
        } => {
            let role = AdminRole::parse(&role)
                .ok_or_else(|| anyhow!("--role: '{role}' must be admin, auditor or service"))?;
            let pw = password.required("the administrator's password")?;
            let a = app.admin.create_admin(&actor, &name, &pw, role).await?;
            out.either(&serde_json::json!({"name": a.name, "role": a.role}), || {
                outln!(
                    "Created {} '{}'. Sign in with POST /auth (username, password).",
                    a.role.as_str(),
                    a.name
                )
            });
        }
        super::AdminCmd::List => {
            let admins = app.admin.list_admins().await?;
            let view: Vec<Value> = admins
                .iter()
                .map(|a| serde_json::json!({"name": a.name, "role": a.role, "enabled": a.enabled, "created_at": a.created_at}))
                .collect();
            out.either(&view, || {
                let rows: Vec<Vec<String>> = admins
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.clone(),
                            a.role.as_str().into(),
                            crate::output::time(a.created_at),
                        ]
                    })
                    .collect();
                table(&["name", "role", "created"], &rows);
            });
        }
        super::AdminCmd::Passwd { name, password } => {
            let pw: zeroize::Zeroizing<String> =
                PasswordArgs::required(&password, "the new password")?;
            app.admin.set_admin_password(&actor, &name, &pw).await?;
            out.either(&serde_json::json!({"changed": name}), || {
                outln!("Changed the password of '{name}'; its sessions were ended.")
            });
        }
        super::AdminCmd::Delete { name } => {
            app.admin.delete_admin(&actor, &name).await?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted administrator '{name}'.")
            });
        }
        super::AdminCmd::Unlock { name } => {
            let unlocked = app.admin.unlock_admin(&actor, &name).await?;
            crate::output::unlocked(out, &unlocked);
        }
    }
    Ok(())
}

fn print_changes(out: Out, changes: &[PlannedChange], dry_run: bool) {
    out.either(
        &serde_json::json!({"dry_run": dry_run, "changes": changes}),
        || {
            let real = changes.iter().filter(|c| c.is_change()).count();
            for c in changes {
                outln!("{c}");
            }
            match (real, dry_run) {
                (0, _) => outln!("No changes."),
                (n, true) => outln!("{n} change(s) would be made (dry run: nothing changed)."),
                (n, false) => outln!("{n} change(s) made."),
            }
        },
    );
}

pub async fn app(app: &App, out: Out, cmd: AppCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    let show = |a: &Application| {
        out.either(a, || {
            fields(&[
                ("name", a.name.0.clone()),
                ("type", a.kind.as_str().into()),
                ("factors", factors_text(a)),
                (
                    "realms",
                    match a.realms.is_empty() {
                        true => "any".into(),
                        false => a
                            .realms
                            .iter()
                            .map(|r| r.0.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                    },
                ),
                (
                    "challenge-response",
                    match a.challenge_response {
                        true => "the PIN alone asks for the code".into(),
                        false => "off".into(),
                    },
                ),
                (
                    "users without a token",
                    match (a.passthru, a.pass_on_no_token) {
                        (true, _) => "pass with the user store's password (passthru)".into(),
                        (false, true) => "skip the factors that need one (pass_on_no_token)".into(),
                        (false, false) => "are refused".into(),
                    },
                ),
                (
                    "unknown users",
                    match a.pass_on_no_user {
                        true => "pass at /validate and RADIUS (pass_on_no_user)".into(),
                        false => "are refused".into(),
                    },
                ),
                (
                    "validate needs",
                    match a.require_client_token {
                        true => "an API client's token (scope validate)".into(),
                        false => "nothing more".into(),
                    },
                ),
                ("description", a.description.clone()),
            ])
        })
    };
    match cmd {
        AppCmd::List => {
            let apps = admin.list::<Application>();
            out.either(&apps, || {
                let rows: Vec<Vec<String>> = apps
                    .iter()
                    .map(|a| {
                        vec![
                            a.name.0.clone(),
                            a.kind.as_str().into(),
                            factors_text(a),
                            a.description.clone(),
                        ]
                    })
                    .collect();
                table(&["name", "type", "factors", "description"], &rows);
            });
        }
        AppCmd::Show { name } => show(&admin.get::<Application>(&name)?),
        AppCmd::Add(args) => {
            let a = args.to_app(None)?;
            if admin.get::<Application>(a.name.as_str()).is_ok() {
                bail!(
                    "application '{}' already exists (use `tessera app set`)",
                    a.name
                );
            }
            show(&admin.put(&actor, a).await?);
        }
        AppCmd::Set(args) => {
            let before = admin.get::<Application>(&args.name)?;
            let a = args.to_app(Some(&before))?;
            show(&admin.put(&actor, a).await?);
        }
        AppCmd::Brand(args) => {
            let mut a = admin.get::<Application>(&args.name)?;
            args.apply(&mut a)?;
            show(&admin.put(&actor, a).await?);
        }
        AppCmd::Delete { name } => {
            admin.delete::<Application>(&actor, &name).await?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted application '{name}'.")
            });
        }
    }
    Ok(())
}

pub async fn realm(app: &App, out: Out, cmd: RealmCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    let show = |r: &Realm| {
        out.either(r, || {
            fields(&[
                ("name", r.name.0.clone()),
                (
                    "sources",
                    r.sources
                        .iter()
                        .map(|s| s.0.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                ("description", r.description.clone()),
            ])
        })
    };
    let to_realm = |a: RealmArgs| Realm {
        name: RealmName(a.name),
        sources: a.sources.into_iter().map(SourceName).collect(),
        description: a.description,
    };
    match cmd {
        RealmCmd::List => {
            let realms = admin.list::<Realm>();
            let default = admin.settings().default_realm;
            out.either(&realms, || {
                let rows: Vec<Vec<String>> = realms
                    .iter()
                    .map(|r| {
                        vec![
                            r.name.0.clone(),
                            r.sources
                                .iter()
                                .map(|s| s.0.clone())
                                .collect::<Vec<_>>()
                                .join(", "),
                            if r.name.0.eq_ignore_ascii_case(&default) {
                                "yes"
                            } else {
                                ""
                            }
                            .into(),
                            r.description.clone(),
                        ]
                    })
                    .collect();
                table(&["name", "sources", "default", "description"], &rows);
            });
        }
        RealmCmd::Show { name } => show(&admin.get::<Realm>(&name)?),
        RealmCmd::Add(args) => {
            if admin.get::<Realm>(&args.name).is_ok() {
                bail!(
                    "realm '{}' already exists (use `tessera realm set`)",
                    args.name
                );
            }
            show(&admin.put(&actor, to_realm(args)).await?);
        }
        RealmCmd::Set(args) => {
            admin.get::<Realm>(&args.name)?;
            show(&admin.put(&actor, to_realm(args)).await?);
        }
        RealmCmd::Delete { name } => {
            admin.delete::<Realm>(&actor, &name).await?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted realm '{name}'.")
            });
        }
    }
    Ok(())
}

pub async fn source(app: &App, out: Out, cmd: SourceCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    match cmd {
        SourceCmd::List => {
            let mut sources = admin.list::<UserSourceDef>();
            for s in &mut sources {
                if let Some(l) = &mut s.ldap {
                    l.bind_password = None;
                }
            }
            out.either(&sources, || {
                let rows: Vec<Vec<String>> = sources
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.0.clone(),
                            s.kind.as_str().into(),
                            s.description.clone(),
                        ]
                    })
                    .collect();
                table(&["name", "type", "description"], &rows);
            });
        }
        SourceCmd::Show { name } => {
            let mut s = admin.get::<UserSourceDef>(&name)?;
            if let Some(l) = &mut s.ldap {
                l.bind_password = None;
            }
            out.either(&s, || {
                let mut rows = vec![
                    ("name", s.name.0.clone()),
                    ("type", s.kind.as_str().into()),
                    ("description", s.description.clone()),
                ];
                if let Some(l) = &s.ldap {
                    rows.push(("directory", l.directory.as_str().into()));
                    rows.push(("servers", l.servers.join(", ")));
                    rows.push((
                        "tls",
                        match (l.encrypted(), l.insecure_skip_verify) {
                            (true, true) => "yes, certificate NOT verified".into(),
                            (true, false) => "yes".into(),
                            (false, _) => "no (passwords cross the network in clear)".into(),
                        },
                    ));
                    rows.push(("base_dn", l.base_dn.clone()));
                    rows.push((
                        "bind_dn",
                        l.bind_dn.clone().unwrap_or_else(|| "(anonymous)".into()),
                    ));
                }
                fields(&rows)
            });
        }
        SourceCmd::Add {
            name,
            kind,
            description,
        } => {
            let kind: UserSourceKind = serde_json::from_value(Value::String(kind.clone()))
                .map_err(|_| anyhow!("--type: '{kind}' is not a user source type (local, ldap)"))?;
            if kind == UserSourceKind::Ldap {
                bail!(
                    "an LDAP user source has many fields: write it in a file ([[user_source]] with an [user_source.ldap] table) and run `tessera apply FILE`; see docs/directory.md"
                );
            }
            if admin.get::<UserSourceDef>(&name).is_ok() {
                bail!("user source '{name}' already exists");
            }
            let s = admin
                .put(
                    &actor,
                    UserSourceDef {
                        name: SourceName(name),
                        kind,
                        description,
                        ldap: None,
                    },
                )
                .await?;
            out.either(&s, || {
                outln!("Created user source '{}' ({}).", s.name, s.kind.as_str())
            });
        }
        SourceCmd::Delete { name } => {
            admin.delete::<UserSourceDef>(&actor, &name).await?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted user source '{name}'.")
            });
        }
    }
    Ok(())
}

pub async fn settings(app: &App, out: Out, cmd: SettingsCmd) -> Result<()> {
    let admin = &app.admin;
    match cmd {
        SettingsCmd::Show { key } => {
            let map = admin.settings().to_map();
            match key {
                Some(k) => {
                    let v = map
                        .get(&k)
                        .ok_or_else(|| anyhow!("unknown setting '{k}'"))?;
                    out.either(v, || outln!("{}", display_value(v)));
                }
                None => out.either(&map, || {
                    let rows: Vec<Vec<String>> = map
                        .iter()
                        .map(|(k, v)| vec![k.clone(), display_value(v)])
                        .collect();
                    table(&["setting", "value"], &rows);
                }),
            }
        }
        SettingsCmd::Set { pairs } => {
            let mut changes = Map::new();
            for p in pairs {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow!("'{p}' is not KEY=VALUE"))?;
                changes.insert(k.trim().to_string(), Value::String(v.to_string()));
            }
            let keys: Vec<String> = changes.keys().cloned().collect();
            let signing_on = changes
                .get("sign_responses")
                .and_then(Value::as_str)
                .is_some_and(|v| {
                    matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "true" | "1" | "yes" | "on"
                    )
                });
            if signing_on
                && tessera_http::rsa_key::stored(
                    app.engine.keys(),
                    &tessera_http::rsa_key::RESPONSE_KEY,
                )
                .await
                .map_err(|e| anyhow!(e))?
                .is_none()
            {
                return Err(anyhow!(
                    "sign_responses needs a key: import one first with tessera response-signing import-key FILE (nothing was changed)"
                ));
            }
            let s = admin.update_settings(&Actor::cli(), changes).await?;
            let map = s.to_map();
            let shown: Map<String, Value> = keys
                .iter()
                .filter_map(|k| map.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            out.either(&shown, || {
                for (k, v) in &shown {
                    outln!("{k} = {}", display_value(v));
                }
            });
        }
    }
    Ok(())
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time_arg(s: &str, now_ms: i64) -> Result<i64> {
    if let Ok(secs) = parse_duration(s) {
        return Ok(now_ms - secs * 1000);
    }
    parse_date(s).map(|t| t * 1000).map_err(|e| anyhow!(e))
}

pub async fn audit(app: &App, out: Out, args: AuditArgs) -> Result<()> {
    let now_ms = app.engine.clock().now_millis();
    let q = AuditQuery {
        user: args.user,
        serial: args.serial,
        action: args.action,
        result: args.result,
        actor: args.actor,
        since_ms: args
            .since
            .as_deref()
            .map(|s| time_arg(s, now_ms))
            .transpose()
            .context("--since")?,
        until_ms: args
            .until
            .as_deref()
            .map(|s| time_arg(s, now_ms))
            .transpose()
            .context("--until")?,
        limit: Some(args.limit.clamp(1, 10_000)),
        before_id: None,
    };
    let records = app.admin.audit_records(&q).await?;
    out.either(&records, || {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                let when =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_ms) * 1_000_000)
                        .ok()
                        .and_then(|t| {
                            t.format(&time::format_description::well_known::Rfc3339)
                                .ok()
                        })
                        .unwrap_or_default();
                vec![
                    when,
                    r.actor.clone(),
                    r.action.clone(),
                    r.user.clone().unwrap_or_default(),
                    r.serial.clone().unwrap_or_default(),
                    r.client_ip.clone().unwrap_or_default(),
                    r.result.clone(),
                    r.reason.clone(),
                ]
            })
            .collect();
        table(
            &[
                "time", "actor", "action", "user", "serial", "client", "result", "reason",
            ],
            &rows,
        );
    });
    Ok(())
}

pub async fn apply(app: &App, out: Out, args: ApplyArgs) -> Result<()> {
    let text = if args.file == "-" {
        super::read_stdin_all("the declarative file (TOML)")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file))?
    };
    let decl: Declaration = toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", args.file))?;
    let changes = if args.dry_run {
        app.admin.plan(&decl, args.prune).await?
    } else {
        app.admin.apply(&Actor::cli(), &decl, args.prune).await?
    };
    print_changes(out, &changes, args.dry_run);
    Ok(())
}

pub async fn export(app: &App, out: Out, args: ExportArgs) -> Result<()> {
    let mut decl = app.admin.export().await?;
    if !args.show_secrets {
        decl = decl.without_secrets();
    }
    let text = if out.json {
        serde_json::to_string_pretty(&decl)?
    } else {
        format!(
            "# Tessera configuration, exported {}.\n# Apply with: tessera apply FILE [--dry-run] [--prune]\n\n{}",
            crate::output::time(app.engine.clock().now()),
            toml::to_string_pretty(&decl).context("cannot render TOML")?
        )
    };
    match args.output {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Wrote {}", path.display());
        }
        None => out!("{text}"),
    }
    Ok(())
}
