//! Tokens: enrollment and administration.

use super::{Actor, Admin, AdminError, AdminResult, Target};
use crate::engine::EngineError;
use crate::ids::{RealmName, Serial, UserRef};
use crate::model::{NewToken, Token, TokenKind, TokenPatch, TokenState};
use crate::rng::random_bytes;
use crate::store::{StoreError, TokenFilter};
use serde::{Deserialize, Serialize};
use tessera_otp::{Algorithm, Digits, OtpAuthUri, OtpKind, decode_base32, encode_base32};
use zeroize::Zeroizing;

/// An enrollment request.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollInput {
    #[serde(rename = "type")]
    pub kind: TokenKind,
    /// The owner's login name, possibly `user@realm`.
    pub user: String,
    #[serde(default)]
    pub realm: Option<String>,
    /// The seed as base32, or an `otpauth://` URI to import; default: a random seed.
    #[serde(default)]
    pub secret: Option<Zeroizing<String>>,
    /// The seed in hexadecimal (privacyIDEA's `otpkey`, RFC 4226's test keys).
    #[serde(default)]
    pub secret_hex: Option<Zeroizing<String>>,
    #[serde(default)]
    pub pin: Option<Zeroizing<String>>,
    #[serde(default)]
    pub digits: Option<u32>,
    #[serde(default)]
    pub algorithm: Option<String>,
    /// TOTP step in seconds (30 or 60).
    #[serde(default)]
    pub period: Option<u32>,
    /// HOTP: the next counter of an imported token.
    #[serde(default)]
    pub counter: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub serial: Option<String>,
}

impl std::fmt::Debug for EnrollInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollInput")
            .field("kind", &self.kind)
            .field("user", &self.user)
            .field("realm", &self.realm)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("secret_hex", &self.secret_hex.as_ref().map(|_| "***"))
            .field("pin", &self.pin.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A token as shown to administrators (never the seed or PIN).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub serial: String,
    #[serde(rename = "type")]
    pub kind: TokenKind,
    /// The owner's login name (empty if unassigned or no longer found).
    pub user: String,
    pub user_source: Option<String>,
    pub realm: Option<String>,
    pub description: String,
    pub state: TokenState,
    pub algorithm: String,
    pub digits: usize,
    pub period: u32,
    pub counter: i64,
    pub count_window: u32,
    pub sync_window: u32,
    pub has_pin: bool,
    pub fail_count: u32,
    pub max_fail: u32,
    pub locked: bool,
    pub count_auth: i64,
    pub count_auth_success: i64,
    pub last_auth: Option<i64>,
    pub created_at: i64,
}

/// The result of an enrollment: what the user's app needs, shown once.
#[derive(Clone, Serialize)]
pub struct Enrolled {
    pub token: TokenInfo,
    /// The seed in base32, for typing into an app.
    pub secret: String,
    /// The `otpauth://` URI (the QR code's content).
    pub uri: String,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("token", &self.token)
            .field("secret", &"***")
            .finish_non_exhaustive()
    }
}

pub(super) fn check_serial(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("serial: must be 1 to 64 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "serial: '{s}' may only contain letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// A PIN that breaks the rules, refused (nothing is changed); none is fine.
pub(super) fn refuse_bad_pin(pin: Option<&str>) -> AdminResult<()> {
    let mut errs = Vec::new();
    if let Some(p) = pin {
        check_pin(p, &mut errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Invalid(errs))
    }
}

pub(crate) fn check_pin(p: &str, errs: &mut Vec<String>) {
    let n = p.chars().count();
    if !(1..=256).contains(&n) {
        errs.push("pin: must be 1 to 256 characters".into());
    } else if p.chars().any(char::is_control) {
        errs.push("pin: must not contain control characters".into());
    }
}

impl Admin {
    pub(crate) async fn token_info(&self, t: &Token) -> AdminResult<TokenInfo> {
        let snap = self.engine.snapshot();
        let (user, source, realm) = match &t.owner {
            Some(owner) => {
                let name = match snap.source(owner.source.as_str()) {
                    Some(src) => src.get(&owner.id).await.map_err(EngineError::from)?,
                    None => None,
                }
                .map(|u| u.username)
                .unwrap_or_default();
                (
                    name,
                    Some(owner.source.0.clone()),
                    snap.realm_of_source(owner.source.as_str()).map(|r| r.0),
                )
            }
            None => (String::new(), None, None),
        };
        let settings = &snap.settings;
        Ok(TokenInfo {
            serial: t.serial.0.clone(),
            kind: t.kind,
            user,
            user_source: source,
            realm,
            description: t.description.clone(),
            state: t.state,
            algorithm: t.algorithm.as_str().into(),
            digits: t.digits.get(),
            period: t.period,
            counter: t.counter,
            count_window: t.window,
            sync_window: t.sync_window,
            has_pin: t.pin_hash.is_some(),
            fail_count: t.fail_count,
            max_fail: t.max_fail,
            locked: t.is_locked_by_failcount(self.now(), settings.failcounter_clear_minutes),
            count_auth: t.count_auth,
            count_auth_success: t.count_auth_success,
            last_auth: t.last_auth,
            created_at: t.created_at,
        })
    }

    /// Removes a user's MFA password (seed 003): the user sets up a new one at the next login
    /// that asks for it. False when the user had none.
    pub async fn clear_mfa_password(
        &self,
        actor: &Actor,
        user: &str,
        realm: Option<&str>,
    ) -> AdminResult<bool> {
        let (owner, username, realm) = self.owner_ref(user, realm).await?;
        let removed = self.engine.store().delete_mfa_password(&owner).await?;
        self.audit(
            actor,
            "mfa_password_clear",
            Target {
                user: Some(&username),
                realm: Some(realm.as_str()),
                ..Target::default()
            },
            "ok",
            if removed {
                "MFA password removed"
            } else {
                "the user had no MFA password"
            },
        )
        .await?;
        Ok(removed)
    }

    /// A user's live web SSO sessions, oldest first.
    pub async fn sso_sessions(
        &self,
        user: &str,
        realm: Option<&str>,
    ) -> AdminResult<Vec<crate::model::SsoSessionInfo>> {
        let (_, username, realm) = self.owner_ref(user, realm).await?;
        self.sessions_of(&username, realm.as_str()).await
    }

    /// The live SSO sessions of `username` in `realm` (also for the user's own page).
    pub async fn sessions_of(
        &self,
        username: &str,
        realm: &str,
    ) -> AdminResult<Vec<crate::model::SsoSessionInfo>> {
        Ok(self.engine.sso().sessions_of(realm, username).await?)
    }

    /// Ends one of a user's SSO sessions (`id`), or all of them; the sessions ended. Their
    /// OpenID Connect clients are told by a running server (this may be the CLI, whose process
    /// would not live through the retries, on a machine that may not reach them).
    pub async fn end_sso_sessions(
        &self,
        actor: &Actor,
        user: &str,
        realm: Option<&str>,
        id: Option<&str>,
    ) -> AdminResult<Vec<crate::model::SsoSession>> {
        let (_, username, realm) = self.owner_ref(user, realm).await?;
        let sessions = self.sessions_of(&username, realm.as_str()).await?;
        let chosen: Vec<_> = sessions
            .iter()
            .filter(|s| id.is_none_or(|id| s.id == id))
            .collect();
        if let Some(id) = id
            && chosen.is_empty()
        {
            return Err(AdminError::NotFound(format!(
                "session '{id}' of '{username}'"
            )));
        }
        let sso = self.engine.sso();
        let mut gone = Vec::new();
        for s in chosen {
            if sso.end_listed(&s.id).await? {
                gone.push(s.session.clone());
            }
        }
        sso.queue_logouts(&gone).await?;
        let ended = gone.len();
        self.audit(
            actor,
            "sso_session_end",
            Target {
                user: Some(&username),
                realm: Some(realm.as_str()),
                ..Target::default()
            },
            "ok",
            &format!("{ended} session(s) ended"),
        )
        .await?;
        Ok(gone)
    }

    pub(super) async fn owner_ref(
        &self,
        user: &str,
        realm: Option<&str>,
    ) -> AdminResult<(UserRef, String, RealmName)> {
        let snap = self.engine.snapshot();
        let (login, realm) = snap.split_login(user, realm);
        let realm = realm.unwrap_or_else(|| snap.settings.default_realm.clone());
        let Some(realm_def) = snap.realm(&realm) else {
            return Err(AdminError::NotFound(format!("realm '{realm}'")));
        };
        let found = self
            .engine
            .find_user(&snap, &realm_def.name, &login)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("user '{login}' in realm '{realm}'")))?;
        Ok((found.user_ref(), found.username, realm_def.name.clone()))
    }

    pub async fn enroll(&self, actor: &Actor, input: EnrollInput) -> AdminResult<Enrolled> {
        let snap = self.engine.snapshot();
        let settings = &snap.settings;
        let mut errs = Vec::new();

        // An imported otpauth:// URI supplies the parameters not given explicitly.
        let mut imported: Option<OtpAuthUri> = None;
        let mut secret: Option<Zeroizing<Vec<u8>>> = None;
        if let Some(text) = &input.secret {
            let text = text.trim();
            if text.starts_with("otpauth://") {
                match OtpAuthUri::parse(text) {
                    Some(u) => {
                        secret = Some(Zeroizing::new(u.secret.clone()));
                        imported = Some(u);
                    }
                    None => errs.push("secret: the otpauth:// URI could not be read".into()),
                }
            } else if looks_hex(text) {
                // Hex digits are base32 letters too (a-f, 2-7): read as base32, such a key
                // would silently become another one.
                errs.push(
                    "secret: this looks like a hexadecimal key: give it as secret_hex (--secret-hex); a base32 seed made only of the letters a-f and digits 2-7 can be given inside an otpauth:// URI".into(),
                );
            } else {
                match decode_base32(text) {
                    Ok(s) => secret = Some(Zeroizing::new(s)),
                    Err(e) => errs.push(format!("secret: {e}")),
                }
            }
            if let Some(s) = &secret
                && !(10..=128).contains(&s.len())
            {
                errs.push("secret: must be 10 to 128 bytes (16 to 205 base32 characters)".into());
            }
        }
        if let Some(hex) = &input.secret_hex {
            if input.secret.is_some() {
                errs.push("give the seed once: secret (base32 or otpauth://) or secret_hex".into());
            }
            let cleaned: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
            let cleaned = Zeroizing::new(cleaned);
            let digits = cleaned.strip_prefix("0x").unwrap_or(&cleaned);
            match data_encoding::HEXLOWER_PERMISSIVE.decode(digits.as_bytes()) {
                Ok(bytes) if (10..=128).contains(&bytes.len()) => {
                    secret = Some(Zeroizing::new(bytes));
                }
                Ok(_) => errs.push(
                    "secret_hex: must be 10 to 128 bytes (20 to 256 hexadecimal digits)".into(),
                ),
                Err(_) => errs
                    .push("secret_hex: not hexadecimal (an even number of digits 0-9, a-f)".into()),
            }
        }
        if let Some(u) = &imported {
            let kind_matches = matches!(
                (u.kind, input.kind),
                (OtpKind::Hotp { .. }, TokenKind::Hotp) | (OtpKind::Totp { .. }, TokenKind::Totp)
            );
            if !kind_matches {
                errs.push(format!(
                    "secret: the otpauth:// URI is not a {} token",
                    input.kind.as_str()
                ));
            }
        }
        let digits_n = input
            .digits
            .or(imported.as_ref().map(|u| u.digits.get() as u32))
            .unwrap_or(settings.default_otp_length);
        let digits = Digits::from_len(u64::from(digits_n));
        if digits.is_none() {
            errs.push("digits: must be 6 or 8".into());
        }
        let algorithm_name = input
            .algorithm
            .clone()
            .or(imported.as_ref().map(|u| u.algorithm.as_str().to_string()))
            .unwrap_or_else(|| settings.default_hash.clone());
        let algorithm = Algorithm::parse(&algorithm_name);
        if algorithm.is_none() {
            errs.push("algorithm: must be SHA1, SHA256 or SHA512".into());
        }
        let imported_period = imported.as_ref().and_then(|u| match u.kind {
            OtpKind::Totp { period } => u32::try_from(period).ok(),
            OtpKind::Hotp { .. } => None,
        });
        let period = input
            .period
            .or(imported_period)
            .unwrap_or(settings.default_totp_period);
        if input.kind == TokenKind::Totp && !matches!(period, 30 | 60) {
            errs.push("period: must be 30 or 60 seconds".into());
        }
        if input.kind == TokenKind::Hotp && input.period.is_some() {
            errs.push("period: only TOTP tokens have a period".into());
        }
        let imported_counter = imported.as_ref().and_then(|u| match u.kind {
            OtpKind::Hotp { counter } => Some(counter),
            OtpKind::Totp { .. } => None,
        });
        let counter = input.counter.or(imported_counter).unwrap_or(0);
        if input.kind == TokenKind::Totp && input.counter.is_some() {
            errs.push("counter: only HOTP tokens have a counter".into());
        }
        let counter = i64::try_from(counter).unwrap_or_else(|_| {
            errs.push("counter: too large".into());
            0
        });
        if let Some(pin) = &input.pin {
            check_pin(pin, &mut errs);
        }
        if let Some(s) = &input.serial
            && let Err(e) = check_serial(s)
        {
            errs.push(e);
        }
        if let Some(d) = &input.description
            && d.chars().count() > 256
        {
            errs.push("description: at most 256 characters".into());
        }
        let owner = match self.owner_ref(&input.user, input.realm.as_deref()).await {
            Ok(o) => Some(o),
            Err(AdminError::NotFound(what)) => {
                errs.push(format!("user: {what} not found"));
                None
            }
            Err(e) => return Err(e),
        };
        let (Some(digits), Some(algorithm), Some((owner, username, realm)), true) =
            (digits, algorithm, owner, errs.is_empty())
        else {
            return Err(AdminError::Invalid(errs));
        };

        let rng = self.engine.ports().rng.as_ref();
        let seed = match secret {
            Some(s) => s,
            None => Zeroizing::new(random_bytes(
                rng,
                match algorithm {
                    Algorithm::Sha1 => 20,
                    Algorithm::Sha256 => 32,
                    Algorithm::Sha512 => 64,
                },
            )),
        };
        let pin_hash = match &input.pin {
            Some(p) => Some(
                self.engine
                    .ports()
                    .hasher
                    .hash(p)
                    .await
                    .map_err(EngineError::from)?,
            ),
            None => None,
        };
        let window = match input.kind {
            TokenKind::Hotp => settings.default_count_window,
            TokenKind::Totp => settings.default_totp_window,
        };
        let mut attempts = 0;
        let serial = loop {
            let serial = match &input.serial {
                Some(s) => Serial(s.clone()),
                None => Serial(format!(
                    "{}{}",
                    input.kind.serial_prefix(),
                    crate::rng::random_hex(rng, 4).to_uppercase()
                )),
            };
            let new = NewToken {
                serial: serial.clone(),
                kind: input.kind,
                owner: Some(owner.clone()),
                description: input.description.clone().unwrap_or_default(),
                seed: seed.clone(),
                algorithm,
                digits,
                period: if input.kind == TokenKind::Totp {
                    period
                } else {
                    0
                },
                counter,
                window,
                sync_window: settings.default_sync_window,
                pin_hash: pin_hash.clone(),
                max_fail: settings.default_max_fail,
                fail_count: 0,
                state: TokenState::Enabled,
                created_at: self.now(),
            };
            match self.engine.store().insert_token(&new).await {
                Ok(()) => break serial,
                Err(StoreError::Conflict(_)) if input.serial.is_none() && attempts < 5 => {
                    attempts += 1;
                }
                Err(StoreError::Conflict(_)) => {
                    return Err(AdminError::Conflict(format!("token {serial}")));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let uri = OtpAuthUri {
            kind: match input.kind {
                TokenKind::Hotp => OtpKind::Hotp {
                    counter: u64::try_from(counter).unwrap_or(0),
                },
                TokenKind::Totp => OtpKind::Totp {
                    period: u64::from(period),
                },
            },
            issuer: settings.otp_issuer.clone(),
            account: format!("{username}@{realm}"),
            secret: seed.to_vec(),
            algorithm,
            digits,
        };
        self.audit(
            actor,
            "token_enroll",
            Target {
                user: Some(&username),
                realm: Some(realm.as_str()),
                serial: Some(serial.as_str()),
                ..Target::default()
            },
            "ok",
            &format!(
                "{} token enrolled{}",
                input.kind.as_str(),
                if pin_hash.is_some() { " with PIN" } else { "" }
            ),
        )
        .await?;
        let token = self
            .engine
            .store()
            .token(&serial)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token {serial}")))?;
        Ok(Enrolled {
            token: self.token_info(&token).await?,
            secret: encode_base32(&seed),
            uri: uri.to_uri(),
        })
    }

    async fn load_token(&self, serial: &str) -> AdminResult<Token> {
        self.engine
            .store()
            .token(&Serial::from(serial))
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token {serial}")))
    }

    pub async fn get_token(&self, serial: &str) -> AdminResult<TokenInfo> {
        let t = self.load_token(serial).await?;
        self.token_info(&t).await
    }

    /// Tokens, optionally of one user (`user` may be `user@realm`).
    pub async fn list_tokens(
        &self,
        user: Option<&str>,
        realm: Option<&str>,
        limit: u32,
        offset: u32,
    ) -> AdminResult<Vec<TokenInfo>> {
        let owner = match user {
            Some(u) => Some(self.owner_ref(u, realm).await?.0),
            None => None,
        };
        let tokens = self
            .engine
            .store()
            .list_tokens(&TokenFilter {
                owner,
                kind: None,
                limit: limit.clamp(1, 10_000),
                offset,
            })
            .await?;
        let mut out = Vec::with_capacity(tokens.len());
        for t in &tokens {
            out.push(self.token_info(t).await?);
        }
        Ok(out)
    }

    async fn patch_token(
        &self,
        actor: &Actor,
        token: &Token,
        patch: TokenPatch,
        action: &str,
        reason: &str,
    ) -> AdminResult<TokenInfo> {
        self.engine
            .store()
            .update_token(&token.serial, &patch)
            .await?;
        let info = self.get_token(token.serial.as_str()).await?;
        self.audit(
            actor,
            action,
            Target {
                user: Some(&info.user),
                realm: info.realm.as_deref(),
                serial: Some(token.serial.as_str()),
                ..Target::default()
            },
            "ok",
            reason,
        )
        .await?;
        Ok(info)
    }

    /// Enables, disables or revokes a token. Revocation is final.
    pub async fn set_token_state(
        &self,
        actor: &Actor,
        serial: &str,
        state: TokenState,
    ) -> AdminResult<TokenInfo> {
        let t = self.load_token(serial).await?;
        if t.state == TokenState::Revoked && state != TokenState::Revoked {
            return Err(AdminError::Forbidden(format!(
                "token {serial} is revoked; revocation cannot be undone (enroll a new token)"
            )));
        }
        let (action, reason) = match state {
            TokenState::Enabled => ("token_enable", "enabled"),
            TokenState::Disabled => ("token_disable", "disabled"),
            TokenState::Revoked => ("token_revoke", "revoked"),
        };
        self.patch_token(
            actor,
            &t,
            TokenPatch {
                state: Some(state),
                ..TokenPatch::default()
            },
            action,
            reason,
        )
        .await
    }

    /// Resets the fail counter.
    pub async fn reset_token(&self, actor: &Actor, serial: &str) -> AdminResult<TokenInfo> {
        let t = self.load_token(serial).await?;
        self.patch_token(
            actor,
            &t,
            TokenPatch {
                reset_failcount: true,
                ..TokenPatch::default()
            },
            "token_reset",
            &format!("fail counter reset (was {})", t.fail_count),
        )
        .await
    }

    /// Sets (or with `None` removes) the token PIN.
    pub async fn set_token_pin(
        &self,
        actor: &Actor,
        serial: &str,
        pin: Option<Zeroizing<String>>,
    ) -> AdminResult<TokenInfo> {
        refuse_bad_pin(pin.as_deref().map(|p| p.as_str()))?;
        let t = self.load_token(serial).await?;
        let hash = match &pin {
            Some(p) => Some(
                self.engine
                    .ports()
                    .hasher
                    .hash(p)
                    .await
                    .map_err(EngineError::from)?,
            ),
            None => None,
        };
        let reason = if hash.is_some() {
            "PIN set"
        } else {
            "PIN removed"
        };
        self.patch_token(
            actor,
            &t,
            TokenPatch {
                pin_hash: Some(hash),
                ..TokenPatch::default()
            },
            "token_pin",
            reason,
        )
        .await
    }

    /// Changes description, max fail count, count window or sync window.
    pub async fn update_token(
        &self,
        actor: &Actor,
        serial: &str,
        description: Option<String>,
        max_fail: Option<u32>,
        count_window: Option<u32>,
        sync_window: Option<u32>,
    ) -> AdminResult<TokenInfo> {
        let mut errs = Vec::new();
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 256)
        {
            errs.push("description: at most 256 characters".into());
        }
        if max_fail.is_some_and(|m| !(1..=1000).contains(&m)) {
            errs.push("max_fail: must be between 1 and 1000".into());
        }
        if count_window.is_some_and(|w| w > 100) {
            errs.push("count_window: must be between 0 and 100".into());
        }
        if sync_window.is_some_and(|w| !(1..=100_000).contains(&w)) {
            errs.push("sync_window: must be between 1 and 100000".into());
        }
        if !errs.is_empty() {
            return Err(AdminError::Invalid(errs));
        }
        let t = self.load_token(serial).await?;
        if t.kind == TokenKind::Hotp && count_window == Some(0) {
            return Err(AdminError::invalid(
                "count_window: an HOTP token needs a window of at least 1",
            ));
        }
        self.patch_token(
            actor,
            &t,
            TokenPatch {
                description,
                max_fail,
                window: count_window,
                sync_window,
                ..TokenPatch::default()
            },
            "token_update",
            "token settings changed",
        )
        .await
    }

    /// Resynchronises a token from two consecutive OTPs searched within its sync window.
    pub async fn resync_token(
        &self,
        actor: &Actor,
        serial: &str,
        otp1: &str,
        otp2: &str,
    ) -> AdminResult<TokenInfo> {
        let t = self.load_token(serial).await?;
        let now = self.now();
        let found = crate::engine::sync_range_of(&t, now)
            .and_then(|(lo, hi)| t.otp_key().find_consecutive(otp1, otp2, lo, hi));
        let Some(second) = found else {
            self.audit(
                actor,
                "token_resync",
                Target {
                    serial: Some(serial),
                    ..Target::default()
                },
                "error",
                "the two OTPs are not consecutive within the sync window",
            )
            .await?;
            return Err(AdminError::invalid(
                "the two OTPs are not consecutive codes of this token within its sync window",
            ));
        };
        let next = i64::try_from(second).unwrap_or(i64::MAX).saturating_add(1);
        // Only forward: a login that accepted a later code meanwhile wins (the pair found is
        // spent or behind it, and moving back would make used codes valid again).
        let patch = TokenPatch {
            counter: Some(next),
            reset_failcount: true,
            ..TokenPatch::default()
        };
        if !self.engine.store().update_token(&t.serial, &patch).await? {
            return Err(AdminError::invalid(
                "the token accepted a later code while it was resynchronised; resynchronise it with two new codes",
            ));
        }
        let info = self.get_token(serial).await?;
        self.audit(
            actor,
            "token_resync",
            Target {
                user: Some(&info.user),
                realm: info.realm.as_deref(),
                serial: Some(serial),
                ..Target::default()
            },
            "ok",
            "resynchronised",
        )
        .await?;
        Ok(info)
    }

    pub async fn delete_token(&self, actor: &Actor, serial: &str) -> AdminResult<()> {
        let t = self.load_token(serial).await?;
        let info = self.token_info(&t).await?;
        self.engine.store().delete_token(&t.serial).await?;
        self.audit(
            actor,
            "token_delete",
            Target {
                user: Some(&info.user),
                realm: info.realm.as_deref(),
                serial: Some(serial),
                ..Target::default()
            },
            "ok",
            "deleted",
        )
        .await
    }
}

/// Text that reads as hexadecimal: only digits 0-9 and letters a-f (either case), an even
/// number of them, 20 or more (a 10-byte key or longer).
fn looks_hex(text: &str) -> bool {
    let t: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    t.len() >= 20 && t.len().is_multiple_of(2) && t.iter().all(char::is_ascii_hexdigit)
}
