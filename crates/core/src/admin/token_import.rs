//! Importing tokens from files (`tessera token import`, `POST /api/v1/tokens/import`) and
//! giving unowned tokens to users (`tessera token assign`). The file is read by
//! `tessera_otp::import`; here each token passes the rules of an enrolment and is stored sealed,
//! or is refused with its line and the reason, with nothing stored for it.

use super::tokens::{check_pin, check_serial, refuse_bad_pin};
use super::{Actor, Admin, AdminError, AdminResult, Target, TokenInfo};
use crate::ids::Serial;
use crate::model::{NewToken, TokenKind, TokenState};
use crate::store::StoreError;
use serde::Serialize;
use std::collections::HashMap;
use tessera_otp::Digits;
use tessera_otp::import::{FileKind, FileToken, PskcKey, TokenFile};
use zeroize::Zeroizing;

/// The kinds of token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenFileFormat {
    /// PSKC (RFC 6030), XML.
    Pskc,
    /// privacyIDEA's OATH CSV.
    Csv,
}

/// What happened to one entry of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportEntry {
    /// The line of the file where the entry starts.
    pub line: usize,
    pub serial: Option<String>,
    /// `imported`, or `refused` (nothing was stored for it).
    pub result: &'static str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<TokenKind>,
    /// The owner given by the file, as `user@realm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a token moved from another server brings beyond its seed (`tessera migrate`).
#[derive(Clone, Debug)]
pub struct Carried {
    /// The PIN hash as the other server stored it (PHC Argon2, or passlib PBKDF2), checked as
    /// it is and re-hashed at the next successful sign-in.
    pub pin_hash: Option<String>,
    /// A PIN the other server kept encrypted rather than hashed: hashed here.
    pub pin: Option<Zeroizing<String>>,
    pub fail_count: u32,
    /// The token's own fail limit; none: the `default_max_fail` setting.
    pub max_fail: Option<u32>,
    pub state: TokenState,
}

impl Default for Carried {
    fn default() -> Self {
        Carried {
            pin_hash: None,
            pin: None,
            fail_count: 0,
            max_fail: None,
            state: TokenState::Enabled,
        }
    }
}

/// The per-token report of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub refused: usize,
    pub entries: Vec<ImportEntry>,
}

impl Admin {
    /// Reads a token file (its format named, or told by its content) and imports its tokens.
    /// A file that cannot be read as a whole is refused with nothing stored.
    pub async fn import_token_file(
        &self,
        actor: &Actor,
        text: &str,
        format: Option<TokenFileFormat>,
        key: &PskcKey,
    ) -> AdminResult<ImportReport> {
        let format = format.unwrap_or(if tessera_otp::import::is_pskc(text) {
            TokenFileFormat::Pskc
        } else {
            TokenFileFormat::Csv
        });
        let file = match format {
            TokenFileFormat::Pskc => {
                tessera_otp::import::read_pskc(text, key).map_err(AdminError::invalid)?
            }
            TokenFileFormat::Csv => {
                if !matches!(key, PskcKey::None) {
                    return Err(AdminError::invalid(
                        "a CSV file holds its keys in the clear: a pre-shared key or password is for PSKC files",
                    ));
                }
                let file = tessera_otp::import::read_csv(text);
                if file.tokens.is_empty() && file.refused.is_empty() {
                    return Err(AdminError::invalid(
                        "the file holds no tokens (a CSV line is: serial, key in hex, type, digits, counter or time step)",
                    ));
                }
                file
            }
        };
        let name = match format {
            TokenFileFormat::Pskc => "PSKC",
            TokenFileFormat::Csv => "CSV",
        };
        self.import_tokens(actor, file, name).await
    }

    /// Stores the tokens of a file that pass an enrolment's rules, each on its own (a refused
    /// entry does not stop the others); `format` names the file's kind in the audit log.
    pub async fn import_tokens(
        &self,
        actor: &Actor,
        file: TokenFile,
        format: &str,
    ) -> AdminResult<ImportReport> {
        let mut report = ImportReport::default();
        for refusal in file.refused {
            report.entries.push(ImportEntry {
                line: refusal.line,
                serial: refusal.serial,
                result: "refused",
                kind: None,
                owner: None,
                reason: Some(refusal.reason),
            });
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for token in file.tokens {
            let kind = match token.kind {
                FileKind::Hotp => TokenKind::Hotp,
                FileKind::Totp => TokenKind::Totp,
            };
            let owner_name = token.owner.as_ref().map(|(user, realm)| match realm {
                Some(r) => format!("{user}@{r}"),
                None => user.clone(),
            });
            let entry = |result, reason: Option<String>| ImportEntry {
                line: token.line,
                serial: Some(token.serial.clone()),
                result,
                kind: Some(kind),
                owner: owner_name.clone(),
                reason,
            };
            if let Some(first) = seen.get(&token.serial) {
                report.entries.push(entry(
                    "refused",
                    Some(format!(
                        "the serial appears earlier in the file (line {first})"
                    )),
                ));
                continue;
            }
            seen.insert(token.serial.clone(), token.line);
            match self
                .import_one(actor, &token, kind, format, &Carried::default(), false)
                .await
            {
                Ok(()) => report.entries.push(entry("imported", None)),
                Err(AdminError::Invalid(why)) => {
                    report.entries.push(entry("refused", Some(why.join("; "))))
                }
                Err(AdminError::Conflict(_)) => report.entries.push(entry(
                    "refused",
                    Some("a token with this serial exists already".into()),
                )),
                Err(e) => return Err(e),
            }
        }
        report.entries.sort_by_key(|e| e.line);
        report.imported = report
            .entries
            .iter()
            .filter(|e| e.result == "imported")
            .count();
        report.refused = report.entries.len() - report.imported;
        Ok(report)
    }

    /// Stores one token moved from another server with what it carries (`from` names the
    /// server in the audit log); with `dry_run`, checks everything and stores nothing. Refusals
    /// are `Invalid` (the rules) and `Conflict` (the serial exists).
    pub async fn migrate_token(
        &self,
        actor: &Actor,
        token: &FileToken,
        carried: &Carried,
        from: &str,
        dry_run: bool,
    ) -> AdminResult<()> {
        let kind = match token.kind {
            FileKind::Hotp => TokenKind::Hotp,
            FileKind::Totp => TokenKind::Totp,
        };
        self.import_one(actor, token, kind, from, carried, dry_run)
            .await
    }

    async fn import_one(
        &self,
        actor: &Actor,
        token: &FileToken,
        kind: TokenKind,
        format: &str,
        carried: &Carried,
        dry_run: bool,
    ) -> AdminResult<()> {
        let snap = self.engine.snapshot();
        let settings = &snap.settings;
        let mut errs = Vec::new();
        if let Err(e) = check_serial(&token.serial) {
            errs.push(e);
        }
        let digits = Digits::from_len(u64::from(token.digits));
        if digits.is_none() {
            errs.push(format!(
                "codes of {} digits are not supported (6 or 8 are)",
                token.digits
            ));
        }
        if kind == TokenKind::Totp && !matches!(token.period, 30 | 60) {
            errs.push(format!(
                "a time step of {} seconds is not supported (30 or 60 are)",
                token.period
            ));
        }
        if !(10..=128).contains(&token.secret.len()) {
            errs.push(format!(
                "the seed is {} bytes; it must be 10 to 128",
                token.secret.len()
            ));
        }
        let counter = i64::try_from(token.counter).unwrap_or_else(|_| {
            errs.push("the counter is too large".into());
            0
        });
        let owner = match &token.owner {
            Some((user, realm)) => match self.owner_ref(user, realm.as_deref()).await {
                Ok(found) => Some(found),
                Err(AdminError::NotFound(what)) => {
                    errs.push(format!("the owner: {what} not found"));
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        if let Some(p) = &carried.pin {
            check_pin(p, &mut errs);
        }
        if carried.max_fail.is_some_and(|m| !(1..=1000).contains(&m)) {
            errs.push("the fail limit must be between 1 and 1000".into());
        }
        let (Some(digits), true) = (digits, errs.is_empty()) else {
            return Err(AdminError::Invalid(errs));
        };
        if dry_run {
            return match self
                .engine
                .store()
                .token(&Serial(token.serial.clone()))
                .await?
            {
                Some(_) => Err(AdminError::Conflict(format!("token {}", token.serial))),
                None => Ok(()),
            };
        }
        let pin_hash = match (&carried.pin_hash, &carried.pin) {
            (Some(h), _) => Some(h.clone()),
            (None, Some(p)) => Some(
                self.engine
                    .ports()
                    .hasher
                    .hash(p)
                    .await
                    .map_err(crate::engine::EngineError::from)?,
            ),
            (None, None) => None,
        };
        let description: String = token
            .description
            .clone()
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        let new = NewToken {
            serial: Serial(token.serial.clone()),
            kind,
            owner: owner.as_ref().map(|(r, _, _)| r.clone()),
            description,
            seed: token.secret.clone(),
            algorithm: token.algorithm,
            digits,
            period: if kind == TokenKind::Totp {
                token.period
            } else {
                0
            },
            counter,
            window: match kind {
                TokenKind::Hotp => settings.default_count_window,
                TokenKind::Totp => settings.default_totp_window,
            },
            sync_window: settings.default_sync_window,
            pin_hash,
            max_fail: carried.max_fail.unwrap_or(settings.default_max_fail),
            fail_count: carried.fail_count,
            state: carried.state,
            created_at: self.now(),
        };
        match self.engine.store().insert_token(&new).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(AdminError::Conflict(format!("token {}", token.serial)));
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            actor,
            "token_import",
            Target {
                user: owner.as_ref().map(|(_, name, _)| name.as_str()),
                realm: owner.as_ref().map(|(_, _, realm)| realm.as_str()),
                serial: Some(token.serial.as_str()),
                ..Target::default()
            },
            "ok",
            &format!(
                "{} token imported from {}{}",
                kind.as_str(),
                if token.line > 0 {
                    format!("a {format} file (line {})", token.line)
                } else {
                    format!("{format} (migration)")
                },
                if owner.is_some() {
                    ""
                } else {
                    ", no owner yet"
                }
            ),
        )
        .await?;
        Ok(())
    }

    /// Moves a token's counter forward to `counter` when it was moved from another server
    /// before and codes were used there since (never back: codes used here stay used); true
    /// when it moved. The token must be of the kind given.
    pub async fn carry_counter(
        &self,
        actor: &Actor,
        serial: &str,
        kind: TokenKind,
        counter: u64,
        dry_run: bool,
    ) -> AdminResult<bool> {
        let Some(token) = self.engine.store().token(&Serial::from(serial)).await? else {
            return Err(AdminError::NotFound(format!("token {serial}")));
        };
        let counter =
            i64::try_from(counter).map_err(|_| AdminError::invalid("the counter is too large"))?;
        if token.kind != kind || token.counter >= counter {
            return Ok(false);
        }
        if dry_run {
            return Ok(true);
        }
        let patch = crate::model::TokenPatch {
            counter: Some(counter),
            ..Default::default()
        };
        if !self
            .engine
            .store()
            .update_token(&token.serial, &patch)
            .await?
        {
            return Ok(false);
        }
        self.audit(
            actor,
            "token_update",
            Target {
                serial: Some(serial),
                ..Target::default()
            },
            "ok",
            &format!("counter moved forward to {counter} (codes used before the migration)"),
        )
        .await?;
        Ok(true)
    }

    /// Moves the number or address of another server's SMS or mail token to its owner
    /// (`field` is `phone` or `email`): set on one of Tessera's own users who has none, left
    /// alone otherwise; says what happened. With `dry_run`, changes nothing.
    pub async fn carry_contact(
        &self,
        actor: &Actor,
        user: &str,
        realm: Option<&str>,
        field: &str,
        value: &str,
        dry_run: bool,
    ) -> AdminResult<String> {
        let (owner, username, _) = self.owner_ref(user, realm).await?;
        let local = self
            .engine
            .store()
            .local_user_by_id(&owner.source, &owner.id)
            .await?;
        let Some(local) = local else {
            return Ok(format!(
                "{username} is a directory user: Tessera sends codes to the {field} the directory holds"
            ));
        };
        let current = match field {
            "phone" => local.user.phone.clone(),
            _ => local.user.email.clone(),
        };
        match current {
            Some(c) if c == value => Ok(format!("{username} has this {field} already")),
            Some(c) if !c.is_empty() => Ok(format!(
                "{username} has another {field} ({c}); the token's ({value}) was left out"
            )),
            _ if dry_run => Ok(format!("{username}'s {field} would be set to {value}")),
            _ => {
                let patch = crate::model::UserPatch {
                    phone: (field == "phone").then(|| Some(value.to_string())),
                    email: (field != "phone").then(|| Some(value.to_string())),
                    ..Default::default()
                };
                self.update_user(actor, Some(owner.source.as_str()), &username, patch, None)
                    .await?;
                Ok(format!("{username}'s {field} set to {value}"))
            }
        }
    }

    /// Gives a token that has no owner to a user (privacyIDEA's `token assign`), with a PIN
    /// when one is given. A token that has an owner is refused: delete it and import it again,
    /// or enrol anew.
    pub async fn assign_token(
        &self,
        actor: &Actor,
        serial: &str,
        user: &str,
        realm: Option<&str>,
        pin: Option<Zeroizing<String>>,
    ) -> AdminResult<TokenInfo> {
        refuse_bad_pin(pin.as_deref().map(|p| p.as_str()))?;
        let token = self
            .engine
            .store()
            .token(&Serial::from(serial))
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token {serial}")))?;
        if token.owner.is_some() {
            let info = self.token_info(&token).await?;
            return Err(AdminError::invalid(format!(
                "token {serial} is assigned to {} already (nothing was changed)",
                if info.user.is_empty() {
                    "a user who is no longer found".to_string()
                } else {
                    format!("'{}'", info.user)
                }
            )));
        }
        let (owner, username, realm) = self.owner_ref(user, realm).await?;
        if !self
            .engine
            .store()
            .assign_token(&token.serial, &owner)
            .await?
        {
            return Err(AdminError::invalid(format!(
                "token {serial} was assigned to someone else meanwhile (nothing was changed)"
            )));
        }
        self.audit(
            actor,
            "token_assign",
            Target {
                user: Some(&username),
                realm: Some(realm.as_str()),
                serial: Some(serial),
                ..Target::default()
            },
            "ok",
            &format!("{} token assigned", token.kind.as_str()),
        )
        .await?;
        if pin.is_some() {
            return self.set_token_pin(actor, serial, pin).await;
        }
        let token = self
            .engine
            .store()
            .token(&token.serial)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token {serial}")))?;
        self.token_info(&token).await
    }
}
