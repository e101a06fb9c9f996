//! `tessera migrate privacyidea`: moves the tokens of a privacyIDEA 3.x or eduMFA installation
//! into Tessera. It reads the installation as it is on disk — `pi.cfg` for the database URL and
//! the encryption key file (`PI_ENCFILE`), then the database — and stores each HOTP/TOTP token
//! with its seed (decrypted with the installation's token key, sealed again under Tessera's
//! master key), counter, fail count, fail limit, description, state, PIN hash and owner. What
//! cannot be moved is listed in the report. Nothing is written to the installation.

use aes::cipher::{BlockModeDecrypt, KeyIvInit, block_padding::Pkcs7};
use data_encoding::HEXLOWER_PERMISSIVE;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tessera_core::admin::{Actor, Admin, AdminError, Carried};
use tessera_core::model::TokenState;
use tessera_otp::Algorithm;
use tessera_otp::import::{FileKind, FileToken};
use tessera_store::foreign::ForeignDb;
use zeroize::Zeroizing;

/// What the migration is told.
#[derive(Debug)]
pub struct Options {
    /// The installation's `pi.cfg` (or eduMFA's `edumfa.cfg`).
    pub config: PathBuf,
    /// Overrides the configuration's `SQLALCHEMY_DATABASE_URI`.
    pub database_url: Option<String>,
    /// Overrides the configuration's `PI_ENCFILE`.
    pub encfile: Option<PathBuf>,
    /// The password of a key file encrypted with `pi-manage setup encrypt_enckey`.
    pub encfile_password: Option<Zeroizing<String>>,
    /// privacyIDEA realm → Tessera realm; a realm not named keeps its name.
    pub realms: BTreeMap<String, String>,
    /// privacyIDEA LDAP resolver → the Tessera user source that already holds its users; a
    /// resolver not named becomes a Tessera LDAP source `pi-<resolver>` with its settings.
    pub resolvers: BTreeMap<String, String>,
    pub dry_run: bool,
}

/// One token's fate.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub serial: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The owner in privacyIDEA (`login@realm`, or the resolver's user id when the login name
    /// could not be found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `imported`, `would import` (dry run), `exists` (already in Tessera: left as it is),
    /// `refused`, `not migrated`, or for SMS and mail tokens `contact` (the number or address
    /// moved to the user).
    pub result: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The report of a migration.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub imported: usize,
    pub exists: usize,
    pub refused: usize,
    pub tokens: Vec<Entry>,
    /// What the installation has that Tessera does not take over (policies, event handlers,
    /// resolvers it could not map, …).
    pub not_migrated: Vec<String>,
    /// Tessera LDAP user sources with the settings of the installation's LDAP resolvers, as a
    /// declarative file (`tessera apply`) takes them; the bind password left out.
    pub ldap_sources: Vec<serde_json::Value>,
    /// What the migration did (or, dry, would do) to Tessera's user sources and realms so that
    /// the LDAP resolvers' users are found: one line each.
    pub sources: Vec<String>,
}

/// The installation as `pi.cfg` names it.
#[derive(Debug)]
struct Install {
    database_url: String,
    encfile: PathBuf,
    base: PathBuf,
}

/// Reads the settings migration needs from `pi.cfg`, a Python file of `NAME = value` lines;
/// only string values are read.
fn read_config(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut values = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(v) = python_string(value.trim()) {
            values.insert(name.to_string(), v);
        }
    }
    Ok(values)
}

/// A Python string literal (`'…'`, `"…"`, with an `r`/`u` prefix), without escapes beyond
/// `\\` and the quote itself.
fn python_string(text: &str) -> Option<String> {
    let raw = text.starts_with(['r', 'R']);
    let text = text.trim_start_matches(['r', 'R', 'u', 'U']);
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let mut out = String::new();
    let mut chars = text[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !raw => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c if c == quote => return Some(out),
            c => out.push(c),
        }
    }
    None
}

fn install(options: &Options) -> Result<Install, String> {
    let cfg = read_config(&options.config)?;
    let base = options
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let database_url = options
        .database_url
        .clone()
        .or_else(|| cfg.get("SQLALCHEMY_DATABASE_URI").cloned())
        .ok_or_else(|| {
            format!(
                "{} names no SQLALCHEMY_DATABASE_URI: give --pi-database-url",
                options.config.display()
            )
        })?;
    let encfile = options
        .encfile
        .clone()
        .or_else(|| {
            cfg.get("PI_ENCFILE")
                .or_else(|| cfg.get("EDUMFA_ENCFILE"))
                .map(PathBuf::from)
        })
        .ok_or_else(|| {
            format!(
                "{} names no PI_ENCFILE: give --encfile",
                options.config.display()
            )
        })?;
    Ok(Install {
        database_url,
        encfile: base.join(encfile),
        base,
    })
}

/// The installation's keys: 32 bytes each for tokens, configuration and values.
struct Keys(Zeroizing<Vec<u8>>);

impl Keys {
    fn read(path: &Path, password: Option<&str>) -> Result<Keys, String> {
        let mut bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| format!("cannot read the encryption key {}: {e}", path.display()))?,
        );
        if bytes.len() > 100 {
            // Encrypted by `pi-manage setup encrypt_enckey`: "iv:cipher" in hex, under the
            // SHA-256 of the password, the keys in hex inside, ended by 0x01 0x02.
            let Some(password) = password else {
                return Err(format!(
                    "the encryption key {} is encrypted with a password: give it with --encfile-password-stdin",
                    path.display()
                ));
            };
            bytes = Self::open_encrypted(&bytes, password)?;
        } else if password.is_some() {
            return Err(format!(
                "the encryption key {} is not encrypted: leave out --encfile-password-stdin",
                path.display()
            ));
        }
        if bytes.len() < 96 {
            return Err(format!(
                "the encryption key {} is {} bytes; privacyIDEA's key file has 96",
                path.display(),
                bytes.len()
            ));
        }
        Ok(Keys(bytes))
    }

    fn open_encrypted(file: &[u8], password: &str) -> Result<Zeroizing<Vec<u8>>, String> {
        use sha2::Digest as _;
        let wrong = || "the encryption key file does not open with this password".to_string();
        let text = std::str::from_utf8(file).map_err(|_| wrong())?.trim();
        let (iv, data) = text.split_once(':').ok_or_else(wrong)?;
        let iv = HEXLOWER_PERMISSIVE
            .decode(iv.as_bytes())
            .map_err(|_| wrong())?;
        let data = HEXLOWER_PERMISSIVE
            .decode(data.as_bytes())
            .map_err(|_| wrong())?;
        let key = Zeroizing::new(sha2::Sha256::digest(password.as_bytes()).to_vec());
        let decryptor =
            cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv).map_err(|_| wrong())?;
        let mut buf = Zeroizing::new(data);
        let plain = decryptor
            .decrypt_padded::<aes::cipher::block_padding::NoPadding>(&mut buf)
            .map_err(|_| wrong())?;
        let end = plain
            .windows(2)
            .rposition(|w| w == [1, 2])
            .ok_or_else(wrong)?;
        let keys = HEXLOWER_PERMISSIVE
            .decode(&plain[..end])
            .map_err(|_| wrong())?;
        Ok(Zeroizing::new(keys))
    }

    /// The key of a slot: 0 tokens, 1 configuration, 2 values.
    fn slot(&self, slot: usize) -> &[u8] {
        &self.0[slot * 32..(slot + 1) * 32]
    }

    /// privacyIDEA's `decrypt`: AES-256-CBC, PKCS#7 padding, or its older padding (the data
    /// in hex, ended by 0x01 0x02).
    fn decrypt(&self, slot: usize, data: &[u8], iv: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let decryptor = || {
            cbc::Decryptor::<aes::Aes256>::new_from_slices(self.slot(slot), iv)
                .map_err(|_| "the IV is not 16 bytes".to_string())
        };
        if data.is_empty() || !data.len().is_multiple_of(16) {
            return Err("the encrypted value has a wrong length".into());
        }
        let mut buf = Zeroizing::new(data.to_vec());
        if let Ok(plain) = decryptor()?.decrypt_padded::<Pkcs7>(&mut buf) {
            return Ok(Zeroizing::new(plain.to_vec()));
        }
        let mut buf = Zeroizing::new(data.to_vec());
        let plain = decryptor()?
            .decrypt_padded::<aes::cipher::block_padding::NoPadding>(&mut buf)
            .map_err(|_| "cannot be decrypted".to_string())?;
        let end = plain
            .windows(2)
            .rposition(|w| w == [1, 2])
            .ok_or("cannot be decrypted with this key file: is it the installation's?")?;
        let hex = &plain[..end];
        HEXLOWER_PERMISSIVE
            .decode(hex)
            .map(Zeroizing::new)
            .map_err(|_| "cannot be decrypted with this key file: is it the installation's?".into())
    }

    /// A value stored as `iv_hex:data_hex` (encrypted PINs, resolver passwords).
    fn decrypt_value(&self, slot: usize, value: &str) -> Result<Zeroizing<Vec<u8>>, String> {
        let (iv, data) = value
            .split_once(':')
            .ok_or("not an encrypted value (iv:data)")?;
        let iv = HEXLOWER_PERMISSIVE
            .decode(iv.as_bytes())
            .map_err(|_| "not hexadecimal")?;
        let data = HEXLOWER_PERMISSIVE
            .decode(data.as_bytes())
            .map_err(|_| "not hexadecimal")?;
        self.decrypt(slot, &data, &iv)
    }
}

/// A privacyIDEA token row.
struct PiToken {
    id: String,
    serial: String,
    kind: String,
    description: String,
    key_enc: String,
    key_iv: String,
    pin_hash: String,
    otplen: u32,
    maxfail: u32,
    active: bool,
    revoked: bool,
    locked: bool,
    failcount: u32,
    count: u64,
}

fn num<T: std::str::FromStr + Default>(v: &Option<String>) -> T {
    v.as_deref()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_default()
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn truthy(v: &Option<String>) -> bool {
    matches!(
        v.as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref(),
        Some("1" | "true" | "t")
    )
}

/// Runs the migration.
pub async fn privacyidea(
    admin: &Admin,
    actor: &Actor,
    options: &Options,
) -> Result<Report, String> {
    let install = install(options)?;
    let keys = Keys::read(
        &install.encfile,
        options.encfile_password.as_deref().map(|p| p.as_str()),
    )?;
    let db = ForeignDb::open(&install.database_url, &install.base).await?;
    if !db.has_table("token").await {
        return Err(
            "the database has no token table: is it a privacyIDEA or eduMFA database?".into(),
        );
    }
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };

    let owners = Owners::read(&db, &keys, &install.base, &mut report).await?;
    // The LDAP resolvers' users must be found in the Tessera realms before tokens are given
    // to them.
    let pending = adopt_ldap_resolvers(admin, actor, &owners, options, &mut report).await?;
    let mut info: HashMap<String, HashMap<String, String>> = HashMap::new();
    for row in db
        .rows(r#"SELECT CAST(token_id AS TEXT), CAST("Key" AS TEXT), CAST("Value" AS TEXT) FROM tokeninfo"#)
        .await?
    {
        if let [Some(id), Some(key), value] = row.as_slice() {
            info.entry(id.clone())
                .or_default()
                .insert(key.clone(), text(value));
        }
    }
    let rows = db
        .rows(
            "SELECT CAST(id AS TEXT), CAST(serial AS TEXT), CAST(tokentype AS TEXT), \
             CAST(description AS TEXT), CAST(key_enc AS TEXT), CAST(key_iv AS TEXT), \
             CAST(pin_hash AS TEXT), CAST(otplen AS TEXT), \
             CAST(maxfail AS TEXT), CAST(active AS TEXT), CAST(revoked AS TEXT), \
             CAST(locked AS TEXT), CAST(failcount AS TEXT), CAST(count AS TEXT) \
             FROM token ORDER BY serial",
        )
        .await?;
    let mut tokens = Vec::new();
    for r in rows {
        if r.len() != 14 {
            continue;
        }
        tokens.push(PiToken {
            id: text(&r[0]),
            serial: text(&r[1]),
            kind: text(&r[2]).to_ascii_lowercase(),
            description: text(&r[3]),
            key_enc: text(&r[4]),
            key_iv: text(&r[5]),
            pin_hash: text(&r[6]),
            otplen: num(&r[7]),
            maxfail: num(&r[8]),
            active: truthy(&r[9]),
            revoked: truthy(&r[10]),
            locked: truthy(&r[11]),
            failcount: num(&r[12]),
            count: num(&r[13]),
        });
    }
    // The key file must open the installation's seeds before anything is changed.
    let with_seeds: Vec<&PiToken> = tokens
        .iter()
        .filter(|t| matches!(t.kind.as_str(), "hotp" | "totp") && !t.key_enc.is_empty())
        .collect();
    if !with_seeds.is_empty() && !with_seeds.iter().any(|t| hex_seed(&keys, t).is_ok()) {
        return Err(format!(
            "the key file {} does not open this installation's token seeds: is it the installation's PI_ENCFILE? Nothing was changed",
            install.encfile.display()
        ));
    }
    for t in &tokens {
        let empty = HashMap::new();
        let tinfo = info.get(&t.id).unwrap_or(&empty);
        let owner = owners.of(&t.id, &options.realms);
        let entry = move_token(
            admin,
            actor,
            &keys,
            t,
            tinfo,
            owner.as_ref(),
            options,
            &pending,
        )
        .await;
        match entry.result {
            "imported" | "would import" => report.imported += 1,
            "exists" => report.exists += 1,
            "refused" => report.refused += 1,
            _ => {}
        }
        report.tokens.push(entry);
    }

    for (table, what) in [
        (
            "policy",
            "policies (Tessera's applications and settings replace them: see the guide)",
        ),
        ("eventhandler", "event handlers"),
        (
            "smsgateway",
            "SMS gateways (Tessera's delivery profiles replace them)",
        ),
        (
            "smtpserver",
            "SMTP servers (Tessera's delivery profiles replace them)",
        ),
        ("radiusserver", "RADIUS servers (RADIUS tokens)"),
        ("machinetoken", "machine token assignments (offline, SSH)"),
    ] {
        if db.has_table(table).await
            && let Ok(rows) = db
                .rows(&format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table}"))
                .await
        {
            let n: u64 = rows.first().and_then(|r| r.first()).map(num).unwrap_or(0);
            if n > 0 {
                report.not_migrated.push(format!("{n} {what}"));
            }
        }
    }
    Ok(report)
}

/// Makes the LDAP resolvers' users findable in Tessera: each resolver becomes a Tessera LDAP
/// user source `pi-<resolver>` with its settings (its bind password decrypted with the
/// installation's key, sealed by Tessera), or the source `--map` names for it; each Tessera
/// realm that a privacyIDEA realm with the resolver maps to gets the source (a realm that does
/// not exist is made with it). Sources and realms already so are left as they are. Returns the
/// realms a dry run would change (their users cannot be looked up yet).
async fn adopt_ldap_resolvers(
    admin: &Admin,
    actor: &Actor,
    owners: &Owners,
    options: &Options,
    report: &mut Report,
) -> Result<std::collections::HashSet<String>, String> {
    let mut pending = std::collections::HashSet::new();
    use tessera_core::ids::{RealmName, SourceName};
    use tessera_core::model::{Realm, UserSourceDef};
    let verb = |done: &str, would: &str| {
        if options.dry_run {
            would.to_string()
        } else {
            done.to_string()
        }
    };
    // Every mapped source must exist before anything is made.
    for (resolver, mapped) in &options.resolvers {
        if admin.get::<UserSourceDef>(mapped).is_err() {
            return Err(format!(
                "--map: the resolver {resolver} is mapped to the user source '{mapped}', which Tessera does not have (tessera source list)"
            ));
        }
    }
    let snap = admin.engine().snapshot();
    for (resolver, def) in &owners.ldap_defs {
        // The Tessera realms its privacyIDEA realms map to, and whether each finds the
        // resolver's users already (a source set up before the migration).
        let logins = owners
            .ldap_logins
            .get(resolver)
            .cloned()
            .unwrap_or_default();
        let mut targets = Vec::new();
        for (pi_realm, _) in owners.realm_resolvers.iter().filter(|(_, r)| r == resolver) {
            let name = options
                .realms
                .get(pi_realm)
                .cloned()
                .unwrap_or_else(|| pi_realm.clone());
            let mut found = false;
            if snap.realm(&name).is_some() && !options.resolvers.contains_key(resolver) {
                for login in &logins {
                    if let Ok(Some(_)) = admin
                        .engine()
                        .find_user(&snap, &RealmName(name.clone()), login)
                        .await
                    {
                        found = true;
                        break;
                    }
                }
            }
            if found {
                report.sources.push(format!(
                    "LDAP resolver {resolver}: realm {name} finds its users already (left as it is)"
                ));
            } else {
                targets.push((pi_realm.clone(), name));
            }
        }
        if targets.is_empty() {
            continue;
        }
        let source = match options.resolvers.get(resolver) {
            Some(mapped) => mapped.clone(),
            None if admin.get::<UserSourceDef>(def.name.as_str()).is_ok() => {
                report.sources.push(format!(
                    "LDAP resolver {resolver}: the user source '{}' exists already (left as it is)",
                    def.name
                ));
                def.name.to_string()
            }
            None => {
                if !options.dry_run {
                    admin
                        .put(actor, def.clone())
                        .await
                        .map_err(|e| format!("the user source {} is not made: {e}", def.name))?;
                }
                report.sources.push(format!(
                    "LDAP resolver {resolver}: {} the LDAP user source '{}' with its settings",
                    verb("made", "would make"),
                    def.name
                ));
                def.name.to_string()
            }
        };
        for (pi_realm, name) in targets {
            let realm = match admin.get::<Realm>(&name) {
                Ok(r) if r.sources.iter().any(|s| s.as_str() == source) => continue,
                Ok(mut r) => {
                    r.sources.push(SourceName::from(source.as_str()));
                    report.sources.push(format!(
                        "realm {name}: {} the user source '{source}'",
                        verb("added", "would add")
                    ));
                    r
                }
                Err(AdminError::NotFound(_)) => {
                    report.sources.push(format!(
                        "realm {name}: {} with the user source '{source}'",
                        verb("made", "would be made")
                    ));
                    Realm {
                        name: RealmName(name.clone()),
                        sources: vec![SourceName::from(source.as_str())],
                        description: format!("privacyIDEA realm {pi_realm}"),
                    }
                }
                Err(e) => return Err(e.to_string()),
            };
            if options.dry_run {
                pending.insert(name.clone());
            } else {
                admin
                    .put(actor, realm)
                    .await
                    .map_err(|e| format!("the realm {name} is not changed: {e}"))?;
            }
        }
    }
    if !options.dry_run && !report.sources.is_empty() {
        admin
            .engine()
            .reload()
            .await
            .map_err(|e| format!("the new configuration is not loaded: {e}"))?;
    }
    Ok(pending)
}

/// Where each token's owner lives: privacyIDEA's `tokenowner` with the login names of the
/// resolvers Tessera can read.
struct Owners {
    /// token id → (login name or user id, realm, whether the name was found)
    of_token: HashMap<String, (String, String, bool)>,
    /// The LDAP resolvers as Tessera LDAP sources (with their bind passwords).
    ldap_defs: Vec<(String, tessera_core::model::UserSourceDef)>,
    /// A few login names of each LDAP resolver's token owners (to see whether a Tessera realm
    /// finds them already).
    ldap_logins: HashMap<String, Vec<String>>,
    /// (privacyIDEA realm, resolver) for each resolver of each realm.
    realm_resolvers: Vec<(String, String)>,
}

impl Owners {
    async fn read(
        db: &ForeignDb,
        keys: &Keys,
        base: &Path,
        report: &mut Report,
    ) -> Result<Owners, String> {
        let mut realms: HashMap<String, String> = HashMap::new();
        for row in db
            .rows("SELECT CAST(id AS TEXT), CAST(name AS TEXT) FROM realm")
            .await?
        {
            if let [Some(id), Some(name)] = row.as_slice() {
                realms.insert(id.clone(), name.clone());
            }
        }
        let mut resolvers: HashMap<String, (String, HashMap<String, String>)> = HashMap::new();
        let mut ids: HashMap<String, String> = HashMap::new();
        for row in db
            .rows("SELECT CAST(id AS TEXT), CAST(name AS TEXT), CAST(rtype AS TEXT) FROM resolver")
            .await?
        {
            if let [Some(id), Some(name), Some(rtype)] = row.as_slice() {
                ids.insert(id.clone(), name.clone());
                resolvers.insert(name.clone(), (rtype.to_ascii_lowercase(), HashMap::new()));
            }
        }
        for row in db
            .rows(r#"SELECT CAST(resolver_id AS TEXT), CAST("Key" AS TEXT), CAST("Value" AS TEXT) FROM resolverconfig"#)
            .await?
        {
            if let [Some(id), Some(key), value] = row.as_slice()
                && let Some(name) = ids.get(id)
                && let Some((_, config)) = resolvers.get_mut(name)
            {
                config.insert(key.clone(), text(value));
            }
        }
        // The login names of each resolver's users, where Tessera can read them.
        let mut names: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (name, (rtype, config)) in &resolvers {
            match rtype.as_str() {
                "passwdresolver" => {
                    let file = config.get("fileName").cloned().unwrap_or_default();
                    match std::fs::read_to_string(&file) {
                        Ok(text) => {
                            let users = text
                                .lines()
                                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                                .filter_map(|l| {
                                    let f: Vec<&str> = l.split(':').collect();
                                    (f.len() >= 3).then(|| (f[2].to_string(), f[0].to_string()))
                                })
                                .collect();
                            names.insert(name.clone(), users);
                        }
                        Err(e) => report.not_migrated.push(format!(
                            "owners in resolver {name}: its file {file} cannot be read ({e}); assign their tokens with tessera token assign"
                        )),
                    }
                }
                "ldapresolver" => {}
                "sqlresolver" => match sql_users(config, keys, base).await {
                    Ok(users) => {
                        names.insert(name.clone(), users);
                    }
                    Err(e) => report.not_migrated.push(format!(
                        "owners in SQL resolver {name}: {e}; their tokens are imported without owner (tessera token assign)"
                    )),
                },
                other => report.not_migrated.push(format!(
                    "owners in resolver {name} (type {other}): their login names are not read yet; the tokens are imported without owner: assign them with tessera token assign SERIAL --user LOGIN"
                )),
            }
        }
        // The owners of LDAP resolvers are looked up in the directory by the id privacyIDEA
        // keeps (the DN, objectGUID or another attribute, as its UIDTYPE says).
        let mut owner_rows = Vec::new();
        let mut ldap_defs = Vec::new();
        let mut ldap_logins = HashMap::new();
        for row in db
            .rows("SELECT CAST(token_id AS TEXT), CAST(resolver AS TEXT), CAST(user_id AS TEXT), CAST(realm_id AS TEXT) FROM tokenowner")
            .await?
        {
            owner_rows.push(row);
        }
        for (name, (rtype, config)) in &resolvers {
            if rtype != "ldapresolver" {
                continue;
            }
            let (def, shown) = match ldap_source_of(name, config, keys) {
                Ok(d) => d,
                Err(e) => {
                    report.not_migrated.push(format!(
                        "owners in LDAP resolver {name}: {e}; their tokens are imported without owner (tessera token assign)"
                    ));
                    continue;
                }
            };
            report.ldap_sources.push(shown);
            ldap_defs.push((name.clone(), def.clone()));
            let source = match tessera_directory::LdapSource::new(&def) {
                Ok(s) => s,
                Err(e) => {
                    report.not_migrated.push(format!(
                        "owners in LDAP resolver {name}: its settings do not make an LDAP source ({e}); their tokens are imported without owner"
                    ));
                    continue;
                }
            };
            let mut users = HashMap::new();
            let mut failed = None;
            for row in &owner_rows {
                if let [_, Some(resolver), Some(user_id), _] = row.as_slice()
                    && resolver == name
                    && !users.contains_key(user_id)
                {
                    use tessera_core::source::UserSource as _;
                    match source
                        .get(&tessera_core::ids::UserId(user_id.clone()))
                        .await
                    {
                        Ok(Some(user)) => {
                            users.insert(user_id.clone(), user.username);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            if let Some(e) = failed {
                report.not_migrated.push(format!(
                    "owners in LDAP resolver {name}: the directory could not be searched ({e}); their tokens are imported without owner"
                ));
            }
            let mut sample: Vec<String> = users.values().cloned().collect();
            sample.sort();
            sample.truncate(5);
            ldap_logins.insert(name.clone(), sample);
            names.insert(name.clone(), users);
        }
        // Which resolvers each realm has.
        let mut realm_resolvers = Vec::new();
        if db.has_table("resolverrealm").await {
            for row in db
                .rows("SELECT CAST(resolver_id AS TEXT), CAST(realm_id AS TEXT) FROM resolverrealm")
                .await?
            {
                if let [Some(resolver), Some(realm)] = row.as_slice()
                    && let (Some(resolver), Some(realm)) = (ids.get(resolver), realms.get(realm))
                {
                    realm_resolvers.push((realm.clone(), resolver.clone()));
                }
            }
        }
        let mut of_token = HashMap::new();
        for row in owner_rows {
            if let [Some(token), resolver, Some(user_id), realm] = row.as_slice() {
                let realm = realm
                    .as_ref()
                    .and_then(|r| realms.get(r))
                    .cloned()
                    .unwrap_or_default();
                let login = resolver
                    .as_ref()
                    .and_then(|r| names.get(r))
                    .and_then(|users| users.get(user_id));
                of_token.insert(
                    token.clone(),
                    match login {
                        Some(l) => (l.clone(), realm, true),
                        None => (user_id.clone(), realm, false),
                    },
                );
            }
        }
        Ok(Owners {
            of_token,
            ldap_defs,
            ldap_logins,
            realm_resolvers,
        })
    }

    /// A token's owner: (login name or user id, Tessera realm, whether the name is known).
    fn of(&self, token_id: &str, map: &BTreeMap<String, String>) -> Option<(String, String, bool)> {
        self.of_token.get(token_id).map(|(login, realm, known)| {
            let realm = map.get(realm).cloned().unwrap_or_else(|| realm.clone());
            (login.clone(), realm, *known)
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn move_token(
    admin: &Admin,
    actor: &Actor,
    keys: &Keys,
    t: &PiToken,
    info: &HashMap<String, String>,
    owner: Option<&(String, String, bool)>,
    options: &Options,
    pending: &std::collections::HashSet<String>,
) -> Entry {
    let owner_text = owner.map(|(login, realm, known)| {
        if *known {
            format!("{login}@{realm}")
        } else {
            format!("user id {login} in {realm}")
        }
    });
    let entry = |result, detail: String| Entry {
        serial: t.serial.clone(),
        kind: t.kind.clone(),
        owner: owner_text.clone(),
        result,
        detail,
    };
    let kind = match t.kind.as_str() {
        "hotp" => FileKind::Hotp,
        "totp" => FileKind::Totp,
        "sms" | "email" => {
            return carry_contact(admin, actor, t, info, owner, options, entry).await;
        }
        other => {
            return entry("not migrated", format!("Tessera has no {other} tokens"));
        }
    };
    let seed = match hex_seed(keys, t) {
        Ok(s) => s,
        Err(e) => return entry("refused", format!("the seed {e}")),
    };
    let algorithm = match info
        .get("hashlib")
        .map(|h| h.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("sha1") => Algorithm::Sha1,
        Some("sha256") => Algorithm::Sha256,
        Some("sha512") => Algorithm::Sha512,
        Some(other) => {
            return entry("refused", format!("the hash {other} is not supported"));
        }
    };
    let period: u32 = info
        .get("timeStep")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(30);
    // privacyIDEA's counter: HOTP the next counter; TOTP the last step accepted.
    let counter = match kind {
        FileKind::Hotp => t.count,
        FileKind::Totp if t.count > 0 => t.count + 1,
        FileKind::Totp => 0,
    };
    let mut carried = Carried {
        fail_count: t.failcount,
        max_fail: (t.maxfail > 0).then_some(t.maxfail.min(1000)),
        state: if t.revoked || t.locked {
            TokenState::Revoked
        } else if t.active {
            TokenState::Enabled
        } else {
            TokenState::Disabled
        },
        ..Carried::default()
    };
    if let Some(encrypted) = t.pin_hash.strip_prefix("@@") {
        match keys
            .decrypt_value(0, encrypted)
            .ok()
            .and_then(|p| String::from_utf8(p.to_vec()).ok())
        {
            Some(pin) if !pin.is_empty() => carried.pin = Some(Zeroizing::new(pin)),
            Some(_) => {}
            None => return entry("refused", "its encrypted PIN cannot be decrypted".into()),
        }
    } else if t.pin_hash.starts_with('$') {
        carried.pin_hash = Some(t.pin_hash.clone());
    } else if !t.pin_hash.is_empty() {
        return entry(
            "refused",
            "its PIN is stored in privacyIDEA's legacy format, which cannot be checked elsewhere: set the PIN again in privacyIDEA (it is then hashed anew) and run the migration again".into(),
        );
    }
    // A dry run cannot look up users in a realm it has not changed yet.
    let deferred = owner.is_some_and(|(_, realm, known)| *known && pending.contains(realm));
    let token = FileToken {
        line: 0,
        serial: t.serial.clone(),
        kind,
        secret: seed,
        digits: t.otplen,
        algorithm,
        counter,
        period,
        description: (!t.description.is_empty()).then(|| t.description.clone()),
        owner: owner
            .filter(|(_, _, known)| *known && !deferred)
            .map(|(login, realm, _)| (login.clone(), (!realm.is_empty()).then(|| realm.clone()))),
    };
    let unknown_owner = owner.is_some_and(|(_, _, known)| !known);
    match admin
        .migrate_token(actor, &token, &carried, "privacyIDEA", options.dry_run)
        .await
    {
        Ok(()) => entry(
            if options.dry_run {
                "would import"
            } else {
                "imported"
            },
            if unknown_owner {
                "without owner: its owner's login name is not known (tessera token assign)".into()
            } else if deferred {
                "its owner is looked up in the realm once the user source is in it".into()
            } else {
                String::new()
            },
        ),
        Err(AdminError::Conflict(_)) => {
            let kind = match kind {
                FileKind::Hotp => tessera_core::model::TokenKind::Hotp,
                FileKind::Totp => tessera_core::model::TokenKind::Totp,
            };
            match admin
                .carry_counter(actor, &t.serial, kind, counter, options.dry_run)
                .await
            {
                Ok(true) => entry(
                    "exists",
                    format!(
                        "in Tessera already; its counter {} forward to {counter}, past the codes used in privacyIDEA since",
                        if options.dry_run {
                            "would move"
                        } else {
                            "moved"
                        }
                    ),
                ),
                Ok(false) => entry(
                    "exists",
                    "a token with this serial is in Tessera already: left as it is".into(),
                ),
                Err(e) => entry("refused", e.to_string()),
            }
        }
        Err(AdminError::Invalid(why)) => entry("refused", why.join("; ")),
        Err(e) => entry("refused", e.to_string()),
    }
}

/// The seed of a token: privacyIDEA keeps the hex of the seed encrypted under the token key.
fn hex_seed(keys: &Keys, t: &PiToken) -> Result<Zeroizing<Vec<u8>>, String> {
    let data = HEXLOWER_PERMISSIVE
        .decode(t.key_enc.trim().as_bytes())
        .map_err(|_| "is not stored in hexadecimal")?;
    let iv = HEXLOWER_PERMISSIVE
        .decode(t.key_iv.trim().as_bytes())
        .map_err(|_| "has an IV not in hexadecimal")?;
    let hex = keys.decrypt(0, &data, &iv)?;
    HEXLOWER_PERMISSIVE
        .decode(&hex)
        .map(Zeroizing::new)
        .map_err(|_| "cannot be decrypted with this key file: is it the installation's?".into())
}

/// An SMS or mail token: Tessera sends codes to the user's own number or address, so the
/// token's number or address goes to the user when the user is Tessera's own and has none.
async fn carry_contact(
    admin: &Admin,
    actor: &Actor,
    t: &PiToken,
    info: &HashMap<String, String>,
    owner: Option<&(String, String, bool)>,
    options: &Options,
    entry: impl Fn(&'static str, String) -> Entry,
) -> Entry {
    let (field, value) = if t.kind == "sms" {
        ("phone", info.get("phone").cloned().unwrap_or_default())
    } else {
        ("email", info.get("email").cloned().unwrap_or_default())
    };
    let Some((login, realm, true)) = owner else {
        return entry(
            "not migrated",
            format!(
                "Tessera sends codes to the user's own {field}; this token has no owner whose login name is known"
            ),
        );
    };
    if value.is_empty()
        || info.get("dynamic_phone").is_some_and(|v| v == "1")
        || info.get("dynamic_email").is_some_and(|v| v == "1")
    {
        return entry(
            "contact",
            format!(
                "Tessera sends codes to {login}'s {field} from the user source (methods sms_otp, mail_otp)"
            ),
        );
    }
    match admin
        .carry_contact(actor, login, Some(realm), field, &value, options.dry_run)
        .await
    {
        Ok(result) => entry("contact", result),
        Err(e) => entry("refused", e.to_string()),
    }
}

/// A Tessera LDAP user source with an LDAP resolver's settings (`LDAPURI`, `LDAPBASE`,
/// `BINDDN`, `BINDPW`, `LOGINNAMEATTRIBUTE`, `LDAPSEARCHFILTER`, `UIDTYPE`, `START_TLS`,
/// `TLS_VERIFY`, `TLS_CA_FILE`, `TIMEOUT`), and the same without its password to show.
fn ldap_source_of(
    name: &str,
    config: &HashMap<String, String>,
    keys: &Keys,
) -> Result<(tessera_core::model::UserSourceDef, serde_json::Value), String> {
    let get = |k: &str| config.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let servers: Vec<String> = get("LDAPURI")
        .ok_or("it names no LDAPURI")?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let login: Vec<String> = get("LOGINNAMEATTRIBUTE")
        .unwrap_or("uid")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let uid_type = get("UIDTYPE").unwrap_or("DN");
    let unique_id = (!uid_type.eq_ignore_ascii_case("DN")).then(|| uid_type.to_string());
    let active_directory = uid_type.eq_ignore_ascii_case("objectGUID")
        || login
            .iter()
            .any(|l| l.eq_ignore_ascii_case("sAMAccountName"));
    let yes =
        |k: &str| get(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    let tls_verify =
        get("TLS_VERIFY").is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    let mut ldap = serde_json::json!({
        "directory": if active_directory { "active_directory" } else { "openldap" },
        "servers": servers,
        "base_dn": get("LDAPBASE").ok_or("it names no LDAPBASE")?,
        "login_attributes": login,
        "attributes": {"unique_id": unique_id, "username": login.first()},
        "starttls": yes("START_TLS"),
        "insecure_skip_verify": !tls_verify,
    });
    if let Some(f) = get("LDAPSEARCHFILTER") {
        ldap["user_filter"] = f.into();
    }
    if let Some(ca) = get("TLS_CA_FILE") {
        ldap["ca_file"] = ca.into();
    }
    if let Some(t) = get("TIMEOUT").and_then(|t| t.parse::<f64>().ok()) {
        ldap["timeout_seconds"] = (t.ceil().clamp(1.0, 60.0) as u32).into();
    }
    if let Some(dn) = get("BINDDN") {
        ldap["bind_dn"] = dn.into();
    }
    let source_name = format!(
        "pi-{}",
        name.to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
    );
    let shown = serde_json::json!({"name": source_name, "type": "ldap", "ldap": ldap.clone()});
    if let Some(pw) = get("BINDPW") {
        // Kept encrypted under the installation's configuration key.
        let plain = keys
            .decrypt_value(1, pw)
            .ok()
            .and_then(|p| String::from_utf8(p.to_vec()).ok())
            .ok_or("its bind password cannot be decrypted")?;
        ldap["bind_password"] = plain.into();
    }
    let def = serde_json::from_value(
        serde_json::json!({"name": source_name, "type": "ldap", "ldap": ldap}),
    )
    .map_err(|e| format!("its settings do not make an LDAP source: {e}"))?;
    Ok((def, shown))
}

/// The login names of an SQL resolver's users by user id, read from its table with its own
/// connection settings (`Driver`, `Server`, `Port`, `Database`, `User`, `Password`,
/// `conParams`, `Table`, `Map`).
async fn sql_users(
    config: &HashMap<String, String>,
    keys: &Keys,
    base: &Path,
) -> Result<HashMap<String, String>, String> {
    let get = |k: &str| config.get(k).map(|v| v.trim()).unwrap_or_default();
    let map: HashMap<String, String> = serde_json::from_str(get("Map"))
        .map_err(|_| "its Map is not a JSON object of column names".to_string())?;
    let column = |k: &str| {
        map.get(k)
            .filter(|c| !c.is_empty() && !c.contains(['"', '`', '\'']))
            .cloned()
            .ok_or_else(|| format!("its Map names no usable {k} column"))
    };
    let (id_col, name_col) = (column("userid")?, column("username")?);
    let table = get("Table");
    if table.is_empty() || table.contains(['"', '`', '\'']) {
        return Err("it names no usable Table".into());
    }
    // The connection string privacyIDEA makes from the same settings.
    let password = match config.get("Password").filter(|p| !p.is_empty()) {
        Some(p) => keys
            .decrypt_value(1, p)
            .ok()
            .and_then(|p| String::from_utf8(p.to_vec()).ok())
            .ok_or("its password cannot be decrypted")?,
        None => String::new(),
    };
    let mut url = format!("{}://{}", get("Driver"), get("User"));
    if !password.is_empty() {
        url.push(':');
        url.push_str(&password);
    }
    if !get("User").is_empty() || !password.is_empty() {
        url.push('@');
    }
    url.push_str(get("Server"));
    if !get("Port").is_empty() {
        url.push(':');
        url.push_str(get("Port"));
    }
    url.push('/');
    url.push_str(get("Database"));
    if !get("conParams").is_empty() {
        url.push('?');
        url.push_str(get("conParams"));
    }
    let db = ForeignDb::open(&url, base).await?;
    let rows = db
        .rows(&format!(
            r#"SELECT CAST("{id_col}" AS TEXT), CAST("{name_col}" AS TEXT) FROM "{table}""#
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [Some(id), Some(name)] => Some((id.clone(), name.clone())),
            _ => None,
        })
        .collect())
}
