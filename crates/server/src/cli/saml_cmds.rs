//! `tessera saml …`: the identity provider's signing key and the service providers.

use crate::app::App;
use crate::output::{Out, fields, table};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use tessera_core::admin::Actor;
use tessera_core::model::{AttributeNames, NameIdFormat, SamlAttribute, SamlServiceProvider};

#[derive(Debug, Subcommand)]
pub enum SamlCmd {
    /// Import the IdP's signing key (PEM, PKCS#8, RSA, at least 2048 bits) and its certificate
    /// (PEM): `openssl req -x509 -newkey rsa:3072 -nodes -days 1095 -subj /CN=mfa.example.org
    /// -keyout idp.key -out idp.crt`. With --next, the pair is published in the metadata as
    /// the next one and signs after `tessera saml rotate`.
    ImportKey {
        /// The private key's PEM file, or - for standard input.
        key: String,
        /// The certificate's PEM file, or - for standard input.
        certificate: String,
        /// Publish the pair as the next key (switch with `tessera saml rotate`) instead of signing
        /// with it at once.
        #[arg(long)]
        next: bool,
    },
    /// Sign with the next key from now on (publish it with import-key --next first, and give
    /// service providers time to read the metadata).
    Rotate,
    /// The fingerprints of the signing and the next certificate.
    Status,
    /// Service providers.
    #[command(subcommand)]
    Sp(Box<SpCmd>),
}

#[derive(Debug, Subcommand)]
pub enum SpCmd {
    /// Register a service provider from its metadata (--metadata FILE or --metadata-url URL)
    /// or from --entity-id and --acs-url.
    Add(Box<SpArgs>),
    /// Change a service provider (only what is given changes).
    Set(Box<SpSetArgs>),
    /// List service providers.
    List,
    /// Show a service provider.
    Show {
        /// The service provider's name.
        name: String,
    },
    /// Delete a service provider.
    Delete {
        /// The service provider's name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct SpArgs {
    /// The service provider's name (for logs, audit and later commands).
    name: String,
    /// The application whose factor chain its users pass.
    #[arg(long)]
    application: String,
    /// The SP's metadata (XML file; `-` reads standard input).
    #[arg(long, conflicts_with = "metadata_url")]
    metadata: Option<String>,
    /// Where to read the SP's metadata (https://, or http:// to this machine); it is read again
    /// every `saml_metadata_refresh_minutes` (1440).
    #[arg(long)]
    metadata_url: Option<String>,
    /// With --metadata-url: trust only the CA certificates in this PEM file for its HTTPS
    /// certificate (an SP whose address has a certificate of a private CA); kept for the
    /// readings that follow.
    #[arg(long, requires = "metadata_url")]
    ca_file: Option<String>,
    /// The SP's entity ID (without metadata).
    #[arg(long)]
    entity_id: Option<String>,
    /// Assertion consumer service URL (HTTP-POST binding; repeat for several, the first is the
    /// default).
    #[arg(long = "acs-url")]
    acs_urls: Vec<String>,
    /// The SP's single logout URL (HTTP-Redirect binding).
    #[arg(long)]
    slo_url: Option<String>,
    /// A file with the SP's signing certificate (PEM; repeat for several).
    #[arg(long = "certificate")]
    certificates: Vec<String>,
    /// A file with the certificate assertions are encrypted to (PEM); turns encryption on.
    #[arg(long)]
    encryption_certificate: Option<String>,
    /// Encrypt assertions to the encryption certificate of the SP's metadata.
    #[arg(long)]
    encrypt_assertions: bool,
    /// unspecified (the login name, default), email, persistent or transient.
    #[arg(long)]
    name_id_format: Option<String>,
    /// Where the NameID's value comes from instead: username, email or attribute:<directory
    /// attribute> — unique, stable and not the user's to change (Microsoft 365:
    /// attribute:ms-ds-consistencyguid with --name-id-format persistent).
    #[arg(long)]
    name_id_from: Option<String>,
    /// An attribute sent: NAME=FROM[=FRIENDLY], FROM one of username, email, given_name,
    /// surname, display_name, phone, groups, principal_name (login@saml_scope),
    /// attribute:<directory attribute>; FRIENDLY: the FriendlyName beside a URI name (repeat).
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// How the standard attributes are named: uri (OID names with FriendlyName, the default:
    /// Shibboleth, SimpleSAMLphp, federations) or basic (mail, uid, groups: mod_auth_mellon).
    #[arg(long)]
    attribute_names: Option<String>,
    /// Refuse authentication requests not signed with the SP's certificates.
    #[arg(long)]
    require_signed_requests: bool,
    /// Let sign-ins start at Tessera (/saml/init?sp=NAME: portal links).
    #[arg(long)]
    idp_initiated: bool,
    /// Sign only the response (default: the assertion and the response).
    #[arg(long, conflicts_with = "sign_assertion_only")]
    sign_response_only: bool,
    /// Sign only the assertion.
    #[arg(long)]
    sign_assertion_only: bool,
    /// A note for administrators (shown by `saml sp show`).
    #[arg(long)]
    description: Option<String>,
}

#[derive(Debug, Args)]
pub struct SpSetArgs {
    /// The service provider's name.
    name: String,
    /// The application whose factor chain its users pass.
    #[arg(long)]
    application: Option<String>,
    /// The ACS URLs (replace the list; repeat).
    #[arg(long = "acs-url")]
    acs_urls: Vec<String>,
    /// The single logout URL; `none` removes it.
    #[arg(long)]
    slo_url: Option<String>,
    /// Signing certificate files (replace the list; repeat).
    #[arg(long = "certificate")]
    certificates: Vec<String>,
    /// The encryption certificate file.
    #[arg(long)]
    encryption_certificate: Option<String>,
    /// true or false.
    #[arg(long)]
    encrypt_assertions: Option<bool>,
    /// unspecified, email, persistent or transient.
    #[arg(long)]
    name_id_format: Option<String>,
    /// Where the NameID's value comes from (as for add); `none`: as the format says.
    #[arg(long)]
    name_id_from: Option<String>,
    /// Attributes NAME=FROM[=FRIENDLY] (replace the list; repeat).
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// How the standard attributes are named: uri or basic.
    #[arg(long)]
    attribute_names: Option<String>,
    /// Send no attributes of the administrator's choosing (the defaults again).
    #[arg(long, conflicts_with = "attributes")]
    default_attributes: bool,
    /// true or false.
    #[arg(long)]
    require_signed_requests: Option<bool>,
    /// Let sign-ins start at Tessera: true or false.
    #[arg(long)]
    idp_initiated: Option<bool>,
    /// What is signed: assertion, response or both.
    #[arg(long)]
    sign: Option<String>,
    /// A note for administrators.
    #[arg(long)]
    description: Option<String>,
}

fn attributes_of(specs: &[String]) -> Result<Vec<SamlAttribute>> {
    specs
        .iter()
        .map(|spec| {
            let mut parts = spec.splitn(3, '=').map(str::trim);
            let (Some(name), Some(from)) = (parts.next(), parts.next()) else {
                bail!("--attribute {spec}: NAME=FROM or NAME=FROM=FRIENDLY");
            };
            Ok(SamlAttribute {
                name: name.to_string(),
                from: from.to_string(),
                friendly_name: parts.next().map(str::to_string),
            })
        })
        .collect()
}

fn attribute_names_of(s: &str) -> Result<AttributeNames> {
    serde_json::from_value(json!(s)).map_err(|_| anyhow!("--attribute-names: uri or basic"))
}

impl SpSetArgs {
    fn apply(self, sp: &mut SamlServiceProvider) -> Result<()> {
        if sp.metadata_url.is_some()
            && (!self.acs_urls.is_empty()
                || self.slo_url.is_some()
                || !self.certificates.is_empty()
                || self.encryption_certificate.is_some())
        {
            bail!(
                "'{}' is read from its metadata address, which gives its addresses and certificates",
                sp.name
            );
        }
        if let Some(a) = self.application {
            sp.application = tessera_core::ids::AppName(a);
        }
        if !self.acs_urls.is_empty() {
            sp.acs_urls = self.acs_urls;
            sp.acs_indexes.clear();
        }
        if let Some(u) = self.slo_url {
            sp.slo_url = (!u.eq_ignore_ascii_case("none")).then_some(u);
        }
        if !self.certificates.is_empty() {
            sp.certificates = self
                .certificates
                .iter()
                .map(|f| read(f, "the PEM certificate"))
                .collect::<Result<_>>()?;
        }
        if let Some(f) = &self.encryption_certificate {
            sp.encryption_certificate = Some(read(f, "the PEM certificate")?);
        }
        if let Some(e) = self.encrypt_assertions {
            sp.encrypt_assertions = e;
        }
        if let Some(f) = &self.name_id_format {
            sp.name_id_format = serde_json::from_value(json!(f)).map_err(|_| {
                anyhow!("--name-id-format: unspecified, email, persistent or transient")
            })?;
            // The administrator's choice: requests asking for another are refused.
            sp.name_id_format_as_asked = false;
        }
        if let Some(from) = self.name_id_from {
            sp.name_id_from = (!from.eq_ignore_ascii_case("none")).then_some(from);
        }
        if !self.attributes.is_empty() {
            sp.attributes = attributes_of(&self.attributes)?;
        }
        if self.default_attributes {
            sp.attributes.clear();
        }
        if let Some(n) = &self.attribute_names {
            sp.attribute_names = attribute_names_of(n)?;
        }
        if let Some(r) = self.require_signed_requests {
            sp.require_signed_requests = r;
        }
        if let Some(i) = self.idp_initiated {
            sp.idp_initiated = i;
        }
        if let Some(what) = &self.sign {
            (sp.sign_assertions, sp.sign_responses) = match what.as_str() {
                "assertion" => (true, false),
                "response" => (false, true),
                "both" => (true, true),
                _ => bail!("--sign: assertion, response or both"),
            };
        }
        if let Some(d) = self.description {
            sp.description = d;
        }
        Ok(())
    }
}

/// Reads metadata from an address (https://, or http:// to this machine); `ca_pem`: the only
/// CA certificates its HTTPS certificate may chain to (none: the system's).
pub async fn fetch_metadata(url: &str, ca_pem: Option<&str>) -> Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("metadata URL {url}"))?;
    let local = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && local) {
        bail!("metadata URL {url}: https:// only (http:// only to this machine)");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No redirects (they could leave https), and at most 1 MiB read.
    let mut builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .context("the CA file holds no readable PEM certificate")?;
        if certs.is_empty() {
            bail!("the CA file holds no PEM certificate");
        }
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build()?;
    let mut res = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !res.status().is_success() {
        bail!(
            "reading {url}: HTTP {} (redirects are not followed: give the final address)",
            res.status()
        );
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > 1 << 20 {
            bail!("{url}: metadata larger than 1 MiB");
        }
    }
    String::from_utf8(body).context("the metadata is not UTF-8")
}

fn read(file: &str, what: &str) -> Result<String> {
    if file == "-" {
        return super::read_stdin_all(what);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

async fn sp_of_args(a: SpArgs) -> Result<SamlServiceProvider> {
    if a.metadata_url.is_some()
        && (a.entity_id.is_some()
            || !a.acs_urls.is_empty()
            || a.slo_url.is_some()
            || !a.certificates.is_empty()
            || a.encryption_certificate.is_some())
    {
        bail!(
            "--metadata-url: the metadata gives the entity ID, addresses and certificates (and is read again); drop --entity-id, --acs-url, --slo-url, --certificate, --encryption-certificate, or register from a metadata file"
        );
    }
    let ca_pem = match &a.ca_file {
        Some(f) => Some(read(f, "the CA certificates (PEM)")?),
        None => None,
    };
    let from_meta = match (&a.metadata, &a.metadata_url) {
        (Some(f), _) => Some(read(f, "the metadata (XML)")?),
        (None, Some(u)) => Some(fetch_metadata(u, ca_pem.as_deref()).await?),
        (None, None) => None,
    };
    let mut sp = match from_meta {
        Some(xml) => tessera_http::saml::sp_from_metadata(&xml, &a.name, &a.application)
            .map_err(|e| anyhow!(e))?,
        None => {
            let Some(entity_id) = a.entity_id.clone() else {
                bail!(
                    "give the SP's metadata (--metadata, --metadata-url) or --entity-id and --acs-url"
                );
            };
            SamlServiceProvider {
                name: a.name.clone(),
                description: String::new(),
                entity_id,
                application: tessera_core::ids::AppName(a.application.clone()),
                acs_urls: Vec::new(),
                acs_indexes: Vec::new(),
                slo_url: None,
                certificates: Vec::new(),
                encryption_certificate: None,
                name_id_format: NameIdFormat::default(),
                name_id_format_as_asked: false,
                name_id_from: None,
                attributes: Vec::new(),
                attribute_names: AttributeNames::default(),
                sign_assertions: true,
                sign_responses: true,
                encrypt_assertions: false,
                require_signed_requests: false,
                idp_initiated: false,
                metadata_url: None,
                metadata_ca_pem: None,
            }
        }
    };
    sp.metadata_url = a.metadata_url.clone();
    sp.metadata_ca_pem = ca_pem;
    if let Some(e) = a.entity_id {
        sp.entity_id = e;
    }
    if !a.acs_urls.is_empty() {
        sp.acs_urls = a.acs_urls;
        sp.acs_indexes.clear();
    }
    if a.slo_url.is_some() {
        sp.slo_url = a.slo_url;
    }
    for f in &a.certificates {
        sp.certificates.push(read(f, "the PEM certificate")?);
    }
    if let Some(f) = &a.encryption_certificate {
        sp.encryption_certificate = Some(read(f, "the PEM certificate")?);
        sp.encrypt_assertions = true;
    }
    if a.encrypt_assertions {
        if sp.encryption_certificate.is_none() {
            bail!(
                "--encrypt-assertions: the metadata names no encryption certificate; give --encryption-certificate"
            );
        }
        sp.encrypt_assertions = true;
    }
    if let Some(f) = &a.name_id_format {
        sp.name_id_format = serde_json::from_value(json!(f)).map_err(|_| {
            anyhow!("--name-id-format: unspecified, email, persistent or transient")
        })?;
        sp.name_id_format_as_asked = false;
    }
    if a.name_id_from.is_some() {
        sp.name_id_from = a.name_id_from;
    }
    sp.attributes.extend(attributes_of(&a.attributes)?);
    if let Some(n) = &a.attribute_names {
        sp.attribute_names = attribute_names_of(n)?;
    }
    if a.require_signed_requests {
        sp.require_signed_requests = true;
    }
    sp.idp_initiated = a.idp_initiated;
    if a.sign_response_only {
        sp.sign_assertions = false;
    }
    if a.sign_assertion_only {
        sp.sign_responses = false;
    }
    if let Some(d) = a.description {
        sp.description = d;
    }
    Ok(sp)
}

fn show(sp: &SamlServiceProvider) {
    let signed = match (sp.sign_assertions, sp.sign_responses) {
        (true, true) => "assertion and response",
        (true, false) => "assertion",
        _ => "response",
    };
    fields(&[
        ("name", sp.name.clone()),
        ("description", sp.description.clone()),
        ("entity_id", sp.entity_id.clone()),
        ("application", sp.application.0.clone()),
        ("acs_urls", sp.acs_urls.join(", ")),
        ("slo_url", sp.slo_url.clone().unwrap_or_default()),
        (
            "name_id_format",
            format!("{:?}", sp.name_id_format).to_lowercase(),
        ),
        ("name_id_from", sp.name_id_from.clone().unwrap_or_default()),
        (
            "attributes",
            if sp.attributes.is_empty() {
                format!("standard ({} names)", sp.attribute_names.as_str())
            } else {
                sp.attributes
                    .iter()
                    .map(|a| format!("{}={}", a.name, a.from))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("signed", signed.into()),
        ("encrypted", sp.encrypt_assertions.to_string()),
        ("signed_requests", sp.require_signed_requests.to_string()),
        ("idp_initiated", sp.idp_initiated.to_string()),
        ("certificates", sp.certificates.len().to_string()),
        ("metadata_url", sp.metadata_url.clone().unwrap_or_default()),
    ]);
}

pub async fn run(app: &App, out: Out, cmd: SamlCmd) -> Result<()> {
    let keys = app.engine.keys();
    match cmd {
        SamlCmd::ImportKey {
            key,
            certificate,
            next,
        } => {
            let fp = tessera_http::saml_keys::import(
                keys,
                &read(&key, "the PEM private key")?,
                &read(&certificate, "the PEM certificate")?,
                next,
            )
            .await
            .map_err(|e| anyhow!(e))?;
            out.either(&json!({"fingerprint": fp, "next": next}), || {
                if next {
                    outln!("Next SAML signing certificate imported (SHA-256 {fp}); it is published in the metadata. Switch with `tessera saml rotate`.")
                } else {
                    outln!("SAML signing key imported (certificate SHA-256 {fp}).")
                }
            });
        }
        SamlCmd::Rotate => {
            let fp = tessera_http::saml_keys::rotate(keys)
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(&json!({"fingerprint": fp}), || {
                outln!("Signing with the next certificate now (SHA-256 {fp}).")
            });
        }
        SamlCmd::Status => {
            let (current, next) = tessera_http::saml_keys::status(keys)
                .await
                .map_err(|e| anyhow!(e))?;
            out.either(&json!({"signing": current, "next": next}), || {
                fields(&[
                    ("signing", current.clone().unwrap_or("(none)".into())),
                    ("next", next.clone().unwrap_or("(none)".into())),
                ])
            });
        }
        SamlCmd::Sp(cmd) => {
            let cmd = *cmd;
            let actor = Actor::cli();
            let admin = &app.admin;
            match cmd {
                SpCmd::Add(a) => {
                    if admin.get::<SamlServiceProvider>(&a.name).is_ok() {
                        bail!("service provider '{}' already exists", a.name);
                    }
                    let sp = sp_of_args(*a).await?;
                    let sp = admin.put(&actor, sp).await?;
                    out.either(&sp, || {
                        outln!("Created SAML service provider '{}'.", sp.name);
                        show(&sp);
                    });
                }
                SpCmd::Set(a) => {
                    let mut sp = admin.get::<SamlServiceProvider>(&a.name)?;
                    a.apply(&mut sp)?;
                    let sp = admin.put(&actor, sp).await?;
                    out.either(&sp, || show(&sp));
                }
                SpCmd::List => {
                    let all = admin.list::<SamlServiceProvider>();
                    out.either(&all, || {
                        let rows: Vec<Vec<String>> = all
                            .iter()
                            .map(|s| {
                                vec![s.name.clone(), s.entity_id.clone(), s.application.0.clone()]
                            })
                            .collect();
                        table(&["NAME", "ENTITY ID", "APPLICATION"], &rows);
                    });
                }
                SpCmd::Show { name } => {
                    let sp = admin.get::<SamlServiceProvider>(&name)?;
                    out.either(&sp, || show(&sp));
                }
                SpCmd::Delete { name } => {
                    admin.delete::<SamlServiceProvider>(&actor, &name).await?;
                    out.either(&json!({"deleted": name}), || {
                        outln!("Deleted SAML service provider '{name}'.")
                    });
                }
            }
        }
    }
    Ok(())
}

/// Reads again the metadata of service providers registered by address whose last reading is
/// `saml_metadata_refresh_minutes` old, and takes what changed. When each was last read is kept
/// in the store (meta `saml_metadata_read/<name> <url>`), so that a restart does not start the
/// count again and nodes sharing a database mostly leave it to one another (two whose checks
/// meet may both read it: harmless, they take the same); `last` holds what this process saw.
pub async fn refresh_due(
    admin: &tessera_core::admin::Admin,
    store: &dyn tessera_core::store::MetaStore,
    last: &mut std::collections::HashMap<String, i64>,
) {
    let snap = admin.engine().snapshot();
    let minutes = snap.settings.saml_metadata_refresh_minutes;
    if minutes == 0 {
        return;
    }
    let period = i64::from(minutes) * 60;
    let now = admin.engine().clock().now();
    // When the store last saw a reading: Ok(None) when it never did, Err when it cannot say.
    let stored = |key: String| async move {
        match store.meta(&key).await {
            Ok(v) => Ok(v.and_then(|v| v.parse::<i64>().ok())),
            Err(e) => {
                tracing::warn!(error = %e, "SAML metadata reading time not read");
                Err(())
            }
        }
    };
    // Only the SPs whose turn it is are copied (this runs every second).
    let mut due = Vec::new();
    for sp in snap.saml_sps.values() {
        let Some(url) = &sp.metadata_url else {
            continue;
        };
        // By name and address: an SP registered again elsewhere starts its own count.
        let key = format!("saml_metadata_read/{} {url}", sp.name);
        let seen = match last.get(&key) {
            Some(t) => *t,
            None => {
                // First seen by this process: counted from the stored reading; never read by a
                // server (just registered — the admin API does not read the address), due now.
                let t = match stored(key.clone()).await {
                    Ok(Some(t)) => t,
                    Ok(None) => now - period,
                    // Asked again at the next check.
                    Err(()) => continue,
                };
                last.insert(key.clone(), t);
                t
            }
        };
        if now - seen < period {
            continue;
        }
        // Due here; another node may have read it meanwhile.
        match stored(key.clone()).await {
            Ok(Some(t)) if now - t < period => {
                last.insert(key, t);
                continue;
            }
            Ok(_) => {}
            Err(()) => continue,
        }
        last.insert(key.clone(), now);
        if let Err(e) = store.set_meta(&key, &now.to_string()).await {
            tracing::warn!(error = %e, "SAML metadata reading time not kept");
        }
        due.push((sp.name.clone(), url.clone(), sp.metadata_ca_pem.clone()));
    }
    drop(snap);
    let actor = Actor {
        name: "system:saml-metadata".into(),
        door: "system".into(),
        client_ip: None,
    };
    for (name, url, ca_pem) in due {
        let fetched = fetch_metadata(&url, ca_pem.as_deref()).await;
        // The SP as it is now, not as it was before the fetch: an administrator may have
        // changed or deleted it meanwhile (a deleted SP is not brought back).
        let current = match admin.get::<SamlServiceProvider>(&name) {
            Ok(sp) if sp.metadata_url.as_deref() == Some(url.as_str()) => sp,
            _ => continue,
        };
        let read = match fetched {
            Ok(xml) => tessera_http::saml::refreshed(&current, &xml).map_err(|e| anyhow!(e)),
            Err(e) => Err(e),
        };
        match read {
            Ok(Some(next)) => match admin.put(&actor, next).await {
                Ok(_) => tracing::info!(sp = %name, %url, "SAML metadata changed: taken"),
                Err(e) => tracing::warn!(sp = %name, error = %e, "SAML metadata not taken"),
            },
            Ok(None) => tracing::debug!(sp = %name, "SAML metadata unchanged"),
            Err(e) => tracing::warn!(sp = %name, %url, error = %e, "SAML metadata not read"),
        }
    }
}
