//! `tessera client …`: RADIUS clients (NASes).

use super::read_secret;
use crate::app::App;
use crate::output::{Out, fields, table};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use tessera_core::admin::Actor;
use tessera_core::ids::AppName;
use tessera_core::model::{ApiClient, ApiClientKind, DeviceType, Net, RadiusClient, SharedSecret};
use tessera_core::rng::{OsRng, random_bytes};
use tessera_radius_proto::Dictionary;

#[derive(Debug, Subcommand)]
pub enum ClientCmd {
    /// Register a client.
    #[command(subcommand)]
    Add(AddKind),
    /// Change a client's settings (only the options given change): a RADIUS client's, or an
    /// API client's (--description, --application, --redirect-uri, --post-logout-redirect-uri,
    /// --backchannel-logout-uri, --require-pkce, --token-lifetime, --id-token-alg).
    Set(ClientArgs),
    /// List clients: RADIUS clients and API clients (agents, user clients, OIDC clients).
    List,
    /// Show a client (a RADIUS client's shared secret only with --show-secret; an API client's
    /// secret is never shown again).
    Show {
        /// The client's name (for logs, audit and later commands).
        name: String,
        /// Also print the shared secret.
        #[arg(long)]
        show_secret: bool,
    },
    /// Delete a client.
    Delete {
        /// The client's name (for logs, audit and later commands).
        name: String,
    },
    /// List the RADIUS attributes reply rules can set (optionally of one vendor).
    Attributes {
        /// Only this vendor's attributes (e.g. cisco, fortinet, microsoft).
        vendor: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AddKind {
    /// A RADIUS network access server: `tessera client add radius vpn --nas-ip 10.0.0.0/24
    /// --secret-stdin --application vpn`.
    Radius(ClientArgs),
    /// An API client (OAuth2): `tessera client add api pam --scope validate`; prints the
    /// client id and secret (the secret only this once).
    Api(ApiClientArgs),
}

#[derive(Debug, Args)]
pub struct ApiClientArgs {
    /// The client's name (for logs, audit and later commands).
    name: String,
    /// agent (client credentials; machines), user (signs users in with the password grant) or
    /// oidc (a web application: OpenID Connect, users sign in on Tessera's login page).
    #[arg(long = "type", default_value = "agent")]
    kind: String,
    /// Where an OIDC client's users are sent back to (repeat for several; exact match).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// How an OIDC client's ID tokens are signed: ES256 (default) or RS256 (import the key
    /// first: tessera oidc import-key).
    #[arg(long)]
    id_token_alg: Option<String>,
    /// Where an OIDC client takes logout tokens when a user's SSO session ends (back-channel
    /// logout).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// With --backchannel-logout-uri: trust only the CA certificates in this PEM file for
    /// its HTTPS certificate (a relying party with a certificate of a private CA); otherwise
    /// the system's CA certificates.
    #[arg(long, requires = "backchannel_logout_uri")]
    backchannel_ca_file: Option<String>,
    /// Where an OIDC client may send users after they sign out at /logout (repeat; exact
    /// match).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// OIDC clients: whether every authorization request must carry PKCE (S256). On by
    /// default; turn it off for a confidential relying party that sends none (Apache
    /// mod_auth_openidc with its defaults: or set OIDCPKCEMethod S256 there instead).
    #[arg(long, value_name = "true|false")]
    require_pkce: Option<bool>,
    /// OIDC clients: a public client (a single-page or native application that cannot keep a
    /// secret): no secret is made; it proves its codes with PKCE (S256), always.
    #[arg(long)]
    public: bool,
    /// The application its users sign in through (user and OIDC clients).
    #[arg(long)]
    application: Option<String>,
    /// A scope its tokens may carry: validate, mfa, introspect (repeat for several).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// An address or network it may call from (repeat; default: any).
    #[arg(long = "allow-ip")]
    allowed_ips: Vec<String>,
    /// Token requests per minute at most, per node (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
    /// Seconds its access tokens live (60 to 86400).
    #[arg(long)]
    token_lifetime: Option<u32>,
    /// A note for administrators.
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client's name (for logs, audit and later commands).
    name: String,
    /// An address or network (CIDR) the NAS sends from (repeat for several).
    #[arg(long = "nas-ip")]
    nas_ip: Vec<String>,
    /// The NAS-Identifier it sends (tells apart NASes behind one address).
    #[arg(long)]
    nas_identifier: Option<String>,
    /// vpn, firewall, switch, router, wireless_controller or other.
    #[arg(long)]
    device_type: Option<String>,
    /// The shared secret (prefer --secret-stdin: flags are visible in the process list).
    #[arg(long, conflicts_with_all = ["secret_stdin", "generate_secret"])]
    secret: Option<String>,
    /// Read the shared secret from the first line of standard input.
    #[arg(long, conflicts_with = "generate_secret")]
    secret_stdin: bool,
    /// Generate a random 32-character secret and print it once.
    #[arg(long)]
    generate_secret: bool,
    /// The application its users log in to (default: the validate_application setting).
    #[arg(long)]
    application: Option<String>,
    /// Accept Access-Requests without Message-Authenticator (legacy equipment only; weakens
    /// protection against BlastRADIUS).
    #[arg(long, overrides_with = "require_message_authenticator")]
    allow_missing_message_authenticator: bool,
    /// Require Message-Authenticator again (the default).
    #[arg(long)]
    require_message_authenticator: bool,
    /// Requests per second accepted from this client (0: no limit).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Reply-Message sent with Access-Accept ("" for none).
    #[arg(long)]
    accept_message: Option<String>,
    /// Reply-Message sent with Access-Reject ("" for none).
    #[arg(long)]
    reject_message: Option<String>,
    /// Reply-Message of Access-Challenge instead of the prompt of the factor ("" for the
    /// factor's own).
    #[arg(long)]
    challenge_message: Option<String>,
    /// A note for administrators.
    #[arg(long)]
    description: Option<String>,
    /// API clients (OIDC): where users are sent back to (repeat; replaces the list).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// API clients (OIDC): where users may go after signing out (repeat; replaces the list).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// API clients (OIDC): where logout tokens go ("" removes it).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// API clients (OIDC): the CA certificates (PEM file) the back-channel address's HTTPS
    /// certificate must chain to ("" for the system's).
    #[arg(long)]
    backchannel_ca_file: Option<String>,
    /// API clients (OIDC): whether authorization requests must carry PKCE (S256).
    #[arg(long, value_name = "true|false")]
    require_pkce: Option<bool>,
    /// API clients: seconds its access tokens live (60 to 86400).
    #[arg(long)]
    token_lifetime: Option<u32>,
    /// API clients (OIDC): ES256 or RS256 ("" for the default, ES256).
    #[arg(long)]
    id_token_alg: Option<String>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl ClientArgs {
    /// The API-client options given, refused for a RADIUS client.
    fn api_only_given(&self) -> Option<&'static str> {
        [
            (!self.redirect_uris.is_empty(), "--redirect-uri"),
            (
                !self.post_logout_redirect_uris.is_empty(),
                "--post-logout-redirect-uri",
            ),
            (
                self.backchannel_logout_uri.is_some(),
                "--backchannel-logout-uri",
            ),
            (self.backchannel_ca_file.is_some(), "--backchannel-ca-file"),
            (self.require_pkce.is_some(), "--require-pkce"),
            (self.token_lifetime.is_some(), "--token-lifetime"),
            (self.id_token_alg.is_some(), "--id-token-alg"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The RADIUS-client options given, refused for an API client.
    fn radius_only_given(&self) -> Option<&'static str> {
        [
            (!self.nas_ip.is_empty(), "--nas-ip"),
            (self.nas_identifier.is_some(), "--nas-identifier"),
            (self.device_type.is_some(), "--device-type"),
            (
                self.secret.is_some() || self.secret_stdin || self.generate_secret,
                "--secret",
            ),
            (
                self.allow_missing_message_authenticator || self.require_message_authenticator,
                "--require-message-authenticator",
            ),
            (self.rate_limit.is_some(), "--rate-limit"),
            (
                self.accept_message.is_some()
                    || self.reject_message.is_some()
                    || self.challenge_message.is_some(),
                "--accept-message",
            ),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The changes to an API client.
    fn api_patch(self) -> Result<tessera_core::admin::ApiClientPatch> {
        let backchannel_ca_pem = match self.backchannel_ca_file.as_deref() {
            None => None,
            Some("") => Some(String::new()),
            Some(f) => Some(
                std::fs::read_to_string(f).with_context(|| format!("--backchannel-ca-file {f}"))?,
            ),
        };
        Ok(tessera_core::admin::ApiClientPatch {
            backchannel_ca_pem,
            description: self.description,
            application: self.application,
            redirect_uris: (!self.redirect_uris.is_empty()).then_some(self.redirect_uris),
            post_logout_redirect_uris: (!self.post_logout_redirect_uris.is_empty())
                .then_some(self.post_logout_redirect_uris),
            backchannel_logout_uri: self.backchannel_logout_uri,
            require_pkce: self.require_pkce,
            token_lifetime_seconds: self.token_lifetime,
            id_token_alg: self.id_token_alg,
            ..Default::default()
        })
    }

    /// Applies the options given to `c`; returns a generated secret to show once.
    fn apply_to(self, c: &mut RadiusClient) -> Result<Option<String>> {
        if let Some(flag) = self.api_only_given() {
            bail!("{flag} is for API clients; '{}' is a RADIUS client", c.name);
        }
        let mut generated = None;
        if !self.nas_ip.is_empty() {
            let mut nets = Vec::new();
            for n in &self.nas_ip {
                nets.push(n.parse::<Net>().map_err(|e| anyhow!("--nas-ip: {e}"))?);
            }
            c.nas_ip = nets;
        }
        if let Some(id) = self.nas_identifier {
            c.nas_identifier = non_empty(id);
        }
        if let Some(t) = self.device_type {
            c.device_type = DeviceType::parse(&t).ok_or_else(|| {
                anyhow!("--device-type: '{t}' must be vpn, firewall, switch, router, wireless_controller or other")
            })?;
        }
        if let Some(s) = self.secret {
            c.secret = Some(SharedSecret::new(s));
        } else if self.secret_stdin {
            c.secret = Some(SharedSecret::new(
                read_secret("shared secret", true)?.to_string(),
            ));
        } else if self.generate_secret {
            let bytes = random_bytes(&OsRng, 24);
            let text = data_encoding::BASE64URL_NOPAD.encode(&bytes);
            c.secret = Some(SharedSecret::new(text.clone()));
            generated = Some(text);
        }
        if let Some(a) = self.application {
            c.application = non_empty(a).map(AppName);
        }
        if self.allow_missing_message_authenticator {
            c.require_message_authenticator = false;
        }
        if self.require_message_authenticator {
            c.require_message_authenticator = true;
        }
        if let Some(r) = self.rate_limit {
            c.rate_limit = (r > 0).then_some(r);
        }
        if let Some(m) = self.accept_message {
            c.messages.accept = non_empty(m);
        }
        if let Some(m) = self.reject_message {
            c.messages.reject = non_empty(m);
        }
        if let Some(m) = self.challenge_message {
            c.messages.challenge = non_empty(m);
        }
        if let Some(d) = self.description {
            c.description = d;
        }
        Ok(generated)
    }
}

fn nets(c: &RadiusClient) -> String {
    c.nas_ip
        .iter()
        .map(|n| {
            serde_json::to_value(n)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An API client as administrators see it: never its secret's hash.
fn show_api(out: Out, c: &ApiClient) {
    let mut c = c.clone();
    c.secret_hash = None;
    out.either(&c, || {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        let mut rows = vec![
            ("name", c.name.clone()),
            ("type", c.kind.as_str().into()),
            ("client id", c.client_id.clone()),
            (
                "application",
                c.application
                    .as_ref()
                    .map(|a| a.0.clone())
                    .unwrap_or_else(|| "-".into()),
            ),
            ("scopes", list(&c.granted_scopes())),
            ("token lifetime", format!("{} s", c.token_lifetime_seconds)),
        ];
        if c.kind == ApiClientKind::Oidc {
            rows.push(("redirect URIs", list(&c.redirect_uris)));
            rows.push((
                "PKCE",
                if c.public {
                    "required (S256): a public client, no secret".into()
                } else if c.require_pkce {
                    "required (S256)".into()
                } else {
                    "optional (the client secret suffices)".into()
                },
            ));
            rows.push((
                "ID tokens",
                c.id_token_alg.clone().unwrap_or_else(|| "ES256".into()),
            ));
            rows.push(("after sign-out", list(&c.post_logout_redirect_uris)));
            rows.push((
                "back-channel logout",
                c.backchannel_logout_uri
                    .clone()
                    .unwrap_or_else(|| "-".into()),
            ));
        }
        if !c.description.is_empty() {
            rows.push(("description", c.description.clone()));
        }
        fields(&rows);
    });
}

fn show(out: Out, c: &RadiusClient, with_secret: bool) {
    let mut c = c.clone();
    if !with_secret {
        c.secret = None;
    }
    out.either(&c, || {
        let mut rows = vec![
            ("name", c.name.clone()),
            ("device type", c.device_type.as_str().into()),
            ("NAS IP", nets(&c)),
            (
                "NAS identifier",
                c.nas_identifier.clone().unwrap_or_else(|| "(any)".into()),
            ),
            (
                "application",
                c.application
                    .as_ref()
                    .map(|a| a.0.clone())
                    .unwrap_or_else(|| "(validate_application setting)".into()),
            ),
            (
                "Message-Authenticator",
                if c.require_message_authenticator {
                    "required".into()
                } else {
                    "optional (legacy client)".into()
                },
            ),
            (
                "rate limit",
                c.rate_limit
                    .map(|r| format!("{r}/s"))
                    .unwrap_or_else(|| "none".into()),
            ),
            (
                "secret",
                match &c.secret {
                    Some(s) => s.expose().to_string(),
                    None => "(hidden; --show-secret shows it)".into(),
                },
            ),
            ("application rules", c.application_rules.len().to_string()),
            ("reply rules", c.reply_rules.len().to_string()),
        ];
        if let Some(m) = &c.messages.accept {
            rows.push(("accept message", m.clone()));
        }
        if let Some(m) = &c.messages.reject {
            rows.push(("reject message", m.clone()));
        }
        if let Some(m) = &c.messages.challenge {
            rows.push(("challenge message", m.clone()));
        }
        if !c.description.is_empty() {
            rows.push(("description", c.description.clone()));
        }
        fields(&rows);
    });
}

pub async fn run(app: &App, out: Out, cmd: ClientCmd) -> Result<()> {
    let actor = Actor::cli();
    let admin = &app.admin;
    match cmd {
        ClientCmd::Add(AddKind::Api(args)) => {
            let kind = match args.kind.as_str() {
                "agent" => tessera_core::model::ApiClientKind::Agent,
                "user" => tessera_core::model::ApiClientKind::User,
                "oidc" => tessera_core::model::ApiClientKind::Oidc,
                other => bail!("--type: '{other}' is not agent, user or oidc"),
            };
            let mut allowed_ips = Vec::new();
            for ip in &args.allowed_ips {
                allowed_ips.push(
                    ip.parse::<Net>()
                        .map_err(|e| anyhow!("--allow-ip {ip}: {e}"))?,
                );
            }
            let created = admin
                .create_api_client(
                    &actor,
                    tessera_core::admin::NewApiClient {
                        name: args.name,
                        kind,
                        application: args.application,
                        scopes: args.scopes,
                        allowed_ips,
                        rate_limit_per_minute: args.rate_limit,
                        token_lifetime_seconds: args.token_lifetime,
                        description: args.description,
                        redirect_uris: args.redirect_uris,
                        id_token_alg: args.id_token_alg,
                        backchannel_logout_uri: args.backchannel_logout_uri,
                        backchannel_ca_pem: match &args.backchannel_ca_file {
                            Some(f) => Some(
                                std::fs::read_to_string(f)
                                    .with_context(|| format!("--backchannel-ca-file {f}"))?,
                            ),
                            None => None,
                        },
                        post_logout_redirect_uris: args.post_logout_redirect_uris,
                        require_pkce: args.require_pkce,
                        public: args.public,
                    },
                )
                .await?;
            let c = &created.client;
            let secret = created.client_secret.as_ref().map(|s| s.as_str());
            out.either(
                &serde_json::json!({
                    "name": c.name, "client_id": c.client_id,
                    "client_secret": secret,
                    "type": c.kind.as_str(), "scopes": c.scopes, "public": c.public,
                }),
                || {
                    outln!("Created API client '{}'.", c.name);
                    let mut rows = vec![("client_id", c.client_id.clone())];
                    if let Some(s) = secret {
                        rows.push(("client_secret", s.to_string()));
                    }
                    rows.push(("type", c.kind.as_str().into()));
                    rows.push(("scopes", c.scopes.join(" ")));
                    fields(&rows);
                    match secret {
                        Some(_) => outln!("The secret is shown this once: store it now."),
                        None => outln!(
                            "A public client: no secret; it must send PKCE (S256) with every sign-in."
                        ),
                    }
                },
            );
        }
        ClientCmd::Add(AddKind::Radius(args)) => {
            if admin.get::<RadiusClient>(&args.name).is_ok() {
                bail!(
                    "RADIUS client '{}' already exists (use `tessera client set`)",
                    args.name
                );
            }
            if args.secret.is_none() && !args.secret_stdin && !args.generate_secret {
                bail!(
                    "give the shared secret: --secret-stdin (recommended), --secret or --generate-secret"
                );
            }
            let mut c = RadiusClient {
                name: args.name.clone(),
                device_type: DeviceType::default(),
                nas_ip: Vec::new(),
                nas_identifier: None,
                secret: None,
                application: None,
                application_rules: Vec::new(),
                require_message_authenticator: true,
                rate_limit: None,
                reply_rules: Vec::new(),
                messages: Default::default(),
                description: String::new(),
            };
            let generated = args.apply_to(&mut c)?;
            let saved = admin.put(&actor, c).await?;
            show(out, &saved, false);
            if let Some(secret) = generated {
                eprintln!(
                    "\nGenerated shared secret (shown once; `tessera client show {} --show-secret` shows it again):\n{secret}",
                    saved.name
                );
            }
        }
        ClientCmd::Set(args) if admin.get::<RadiusClient>(&args.name).is_err() => {
            let api = admin.get::<ApiClient>(&args.name).map_err(|_| {
                anyhow!(
                    "client '{}' not found (no RADIUS or API client has this name)",
                    args.name
                )
            })?;
            if let Some(flag) = args.radius_only_given() {
                bail!(
                    "{flag} is for RADIUS clients; '{}' is an API client",
                    api.name
                );
            }
            let name = args.name.clone();
            let saved = admin
                .update_api_client(&actor, &name, args.api_patch()?)
                .await?;
            show_api(out, &saved);
        }
        ClientCmd::Set(args) => {
            let mut c = admin.get::<RadiusClient>(&args.name)?;
            let generated = args.apply_to(&mut c)?;
            let saved = admin.put(&actor, c).await?;
            show(out, &saved, false);
            if let Some(secret) = generated {
                eprintln!("\nNew shared secret (shown once):\n{secret}");
            }
        }
        ClientCmd::List => {
            let clients = admin.list::<RadiusClient>();
            let shown: Vec<RadiusClient> = clients
                .iter()
                .cloned()
                .map(|mut c| {
                    c.secret = None;
                    c
                })
                .collect();
            let api: Vec<ApiClient> = admin
                .list::<ApiClient>()
                .into_iter()
                .map(|mut c| {
                    c.secret_hash = None;
                    c
                })
                .collect();
            let json = serde_json::json!({"radius_clients": shown, "api_clients": api});
            out.either(&json, || {
                let mut rows: Vec<Vec<String>> = shown
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            "radius".into(),
                            c.device_type.as_str().into(),
                            nets(c),
                            c.application
                                .as_ref()
                                .map(|a| a.0.clone())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                rows.extend(api.iter().map(|c| {
                    vec![
                        c.name.clone(),
                        c.kind.as_str().into(),
                        c.client_id.clone(),
                        c.redirect_uris.join(", "),
                        c.application
                            .as_ref()
                            .map(|a| a.0.clone())
                            .unwrap_or_default(),
                    ]
                }));
                table(
                    &[
                        "name",
                        "kind",
                        "device type / client id",
                        "nas ip / redirect uris",
                        "application",
                    ],
                    &rows,
                );
            });
        }
        ClientCmd::Show { name, .. } if admin.get::<RadiusClient>(&name).is_err() => {
            let c = admin.get::<ApiClient>(&name).map_err(|_| {
                anyhow!("client '{name}' not found (no RADIUS or API client has this name)")
            })?;
            show_api(out, &c);
        }
        ClientCmd::Show { name, show_secret } => {
            let c = admin.get::<RadiusClient>(&name)?;
            show(out, &c, show_secret);
        }
        ClientCmd::Delete { name } if admin.get::<RadiusClient>(&name).is_err() => {
            admin
                .delete::<ApiClient>(&actor, &name)
                .await
                .map_err(|_| {
                    anyhow!("client '{name}' not found (no RADIUS or API client has this name)")
                })?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted API client '{name}'.")
            });
        }
        ClientCmd::Delete { name } => {
            admin.delete::<RadiusClient>(&actor, &name).await?;
            out.either(&serde_json::json!({"deleted": name}), || {
                outln!("Deleted RADIUS client '{name}'.")
            });
        }
        ClientCmd::Attributes { vendor } => {
            let dict = Dictionary::builtin();
            let vendor_id = match &vendor {
                None => None,
                Some(v) => Some(
                    dict.vendors()
                        .find(|(n, _)| n.eq_ignore_ascii_case(v))
                        .map(|(_, id)| id)
                        .ok_or_else(|| {
                            anyhow!(
                                "unknown vendor '{v}'; known: {}",
                                dict.vendors()
                                    .map(|(n, _)| n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })?,
                ),
            };
            let rows: Vec<Vec<String>> = dict
                .attributes()
                .filter(|a| vendor_id.is_none_or(|v| a.vendor == v))
                .map(|a| {
                    let vendor = dict
                        .vendors()
                        .find(|(_, id)| *id == a.vendor)
                        .map(|(n, id)| format!("{n} ({id})"))
                        .unwrap_or_else(|| "standard".into());
                    let values: Vec<&str> = dict.values_of(a).into_iter().map(|(n, _)| n).collect();
                    vec![
                        a.name.clone(),
                        vendor,
                        a.code.to_string(),
                        a.data_type.as_str().into(),
                        values.join(" "),
                    ]
                })
                .collect();
            out.either(&rows, || {
                table(&["attribute", "vendor", "number", "type", "values"], &rows)
            });
        }
    }
    Ok(())
}
