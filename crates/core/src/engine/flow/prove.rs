//! Checking one answer against one factor: passwords (directory or MFA password), OTPs with or
//! without a PIN, sent codes, and whether a user is enrolled for a method.

use super::*;
use crate::engine::otp::{OtpCheck, split_pin};
use crate::engine::{AuthRequest, Engine, EngineError, Outcome, RejectReason};
use crate::ids::Serial;
use crate::model::{Application, CodeKind, Factor, Method, Token, Transaction, TxStatus, User};
use crate::source::SourceError;
use crate::store::FailKind;

impl Engine {
    /// Checks one factor. `with_pin`: the OTP is preceded (or followed) by the token PIN; true
    /// only for the first factor of a login. `tx`: the transaction whose sent code may answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn prove(
        &self,
        l: &Login<'_>,
        factor: &Factor,
        user: &User,
        tokens: &[Token],
        pass: &str,
        with_pin: bool,
        tx: Option<&Transaction>,
    ) -> Result<Proof, EngineError> {
        let methods = factor.methods_for(user, l.realm.as_ref().map_or("", |r| r.as_str()));
        if methods.is_empty() {
            return Ok(Proof::Failed(RejectReason::NoMatchingRule));
        }
        let mut first_failure = None;
        for method in &methods {
            let proof = match method {
                Method::Password => self.prove_password(l, user, pass).await?,
                Method::SoftOtp => self.prove_soft_otp(l, tokens, pass, with_pin).await?,
                // The second round of challenge-response: the password was proven in the first.
                Method::PasswordOtp if tx.is_some_and(|t| t.next_factor == 0) => {
                    self.prove_soft_otp(l, tokens, pass, false).await?
                }
                Method::PasswordOtp => self.prove_password_otp(l, user, tokens, pass).await?,
                Method::MfaPassword => Some(self.prove_mfa_password(l, user, pass).await?),
                Method::SmsOtp | Method::MailOtp => match self.check_code(l, tx, pass).await? {
                    Some(true) => {
                        l.mark_checked();
                        Some(Proof::Passed(None))
                    }
                    Some(false) => {
                        l.mark_checked();
                        Some(Proof::Failed(RejectReason::WrongOtp))
                    }
                    None => None,
                },
                // Information mode proves nothing: it follows a factor that does (see
                // `after_proof`), never answers one itself.
                Method::ApprovedOtp if !self.waits_for_click(l, *method) => {
                    Some(Proof::Failed(RejectReason::NoUsableToken))
                }
                Method::EmailLink | Method::ApprovedOtp => match tx {
                    Some(t)
                        if t.code.as_ref().is_some_and(|c| {
                            c.kind == CodeKind::Link && c.factor == t.next_factor
                        }) =>
                    {
                        Some(match t.status {
                            TxStatus::Answered => Proof::Passed(None),
                            TxStatus::Declined => Proof::Failed(RejectReason::Declined),
                            _ => Proof::Failed(RejectReason::NotYetAnswered),
                        })
                    }
                    _ => None,
                },
            };
            match proof {
                Some(Proof::Passed(t)) => return Ok(Proof::Passed(t)),
                // The first failure is reported, but one of the user's own (a wrong OTP) wins
                // over a directory that could not be asked, so that it counts.
                Some(failed) => {
                    let replace = match &first_failure {
                        None => true,
                        Some(Proof::Failed(
                            RejectReason::SourceUnavailable
                            | RejectReason::NotYetAnswered
                            | RejectReason::Declined,
                        )) => {
                            let own = !matches!(
                                failed,
                                Proof::Failed(
                                    RejectReason::SourceUnavailable
                                        | RejectReason::NotYetAnswered
                                        | RejectReason::Declined
                                )
                            );
                            if own {
                                // The audit reason is the user's failure, without the outage.
                                l.clear_note();
                            }
                            own
                        }
                        Some(_) => false,
                    };
                    if replace {
                        first_failure = Some(failed);
                    }
                }
                None => {}
            }
        }
        Ok(first_failure.unwrap_or(Proof::Failed(RejectReason::NoUsableToken)))
    }

    pub(super) async fn prove_password(
        &self,
        l: &Login<'_>,
        user: &User,
        pass: &str,
    ) -> Result<Option<Proof>, EngineError> {
        let wrong = Proof::Failed(RejectReason::WrongPassword);
        if pass.is_empty() {
            return Ok(Some(wrong));
        }
        let Some(source) = l.snap.source(user.source.as_str()) else {
            return Ok(Some(wrong));
        };
        let verified = source.verify_password(user, pass).await;
        if verified.is_ok() {
            l.mark_checked();
        }
        Ok(Some(match verified {
            Ok(true) => Proof::Passed(None),
            Ok(false) => wrong,
            Err(e @ SourceError::Unavailable { .. }) => {
                tracing::warn!(error = %e, "password not checked");
                l.set_note(e.to_string());
                Proof::Failed(RejectReason::SourceUnavailable)
            }
            Err(e) => return Err(e.into()),
        }))
    }

    /// The user's MFA password; a user without one cannot answer (but may set one up).
    pub(super) async fn prove_mfa_password(
        &self,
        l: &Login<'_>,
        user: &User,
        pass: &str,
    ) -> Result<Proof, EngineError> {
        let wrong = Proof::Failed(RejectReason::WrongPassword);
        match self.ports.store.mfa_password(&user.user_ref()).await? {
            Some(hash) if !pass.is_empty() => {
                let right = self.ports.hasher.verify(pass, &hash).await?;
                l.mark_checked();
                Ok(match right {
                    true => Proof::Passed(None),
                    false => wrong,
                })
            }
            Some(_) => Ok(wrong),
            None => {
                self.ports.hasher.waste_verify().await?;
                Ok(Proof::Failed(RejectReason::NoUsableToken))
            }
        }
    }

    /// The user has what one of `methods` needs (an `if_enrolled` factor applies).
    /// Decided on all the user's tokens, never on those a request narrowed the login to (a
    /// `serial` naming no token must not make the user look unenrolled).
    pub(super) async fn enrolled(
        &self,
        user: &User,
        methods: &[Method],
    ) -> Result<bool, EngineError> {
        let present = |v: &Option<String>| v.as_ref().is_some_and(|x| !x.trim().is_empty());
        for m in methods {
            let has = match m {
                Method::Password | Method::ApprovedOtp => true,
                Method::SoftOtp | Method::PasswordOtp => self
                    .ports
                    .store
                    .tokens_of(&user.user_ref())
                    .await?
                    .iter()
                    .any(|t| t.is_usable_state()),
                Method::SmsOtp => present(&user.phone),
                Method::MailOtp | Method::EmailLink => present(&user.email),
                Method::MfaPassword => self
                    .ports
                    .store
                    .mfa_password(&user.user_ref())
                    .await?
                    .is_some(),
            };
            if has {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) async fn prove_soft_otp(
        &self,
        l: &Login<'_>,
        tokens: &[Token],
        pass: &str,
        with_pin: bool,
    ) -> Result<Option<Proof>, EngineError> {
        let settings = &l.snap.settings;
        let usable: Vec<&Token> = tokens.iter().filter(|t| t.is_usable_state()).collect();
        if usable.is_empty() {
            // A user without a token answers after the time of one PIN check when a PIN was
            // typed, as an unknown user does (see `waste_time`).
            if with_pin && pass.len() > settings.default_otp_length as usize {
                self.ports.hasher.waste_verify().await?;
            }
            return Ok(None);
        }
        let mut candidates: Vec<(&Token, &str)> = Vec::new();
        if with_pin {
            let mut hashed = false;
            let mut pin_typed = false;
            for token in &usable {
                let Some((pin, otp)) = split_pin(pass, token.digits.get(), settings.prepend_pin)
                else {
                    continue;
                };
                pin_typed |= !pin.is_empty();
                let pin_ok = match &token.pin_hash {
                    None => pin.is_empty(),
                    Some(_) if pin.is_empty() => false,
                    Some(hash) => {
                        hashed = true;
                        let right = self.ports.hasher.verify(pin, hash).await?;
                        l.mark_checked();
                        if right {
                            self.upgrade_pin_hash(token, pin, hash).await;
                        }
                        right
                    }
                };
                if pin_ok {
                    candidates.push((token, otp));
                }
            }
            // A PIN was typed but no token has one: take the time of one PIN check, as for
            // tokens with a PIN and for unknown users, so that timing does not tell them apart.
            if pin_typed && !hashed {
                self.ports.hasher.waste_verify().await?;
            }
            if candidates.is_empty() {
                if settings.increase_failcounter_on_wrong_pin {
                    let serials: Vec<Serial> = usable.iter().map(|t| t.serial.clone()).collect();
                    self.ports
                        .store
                        .record_otp_failures(
                            &serials,
                            l.now,
                            !settings.no_auth_counter,
                            settings.failcounter_clear_minutes,
                        )
                        .await?;
                }
                return Ok(Some(Proof::Failed(RejectReason::WrongPin)));
            }
        } else {
            candidates = usable.iter().map(|t| (*t, pass)).collect();
        }
        let checked = self.check_otps(settings, &candidates, l.now).await?;
        l.mark_checked();
        Ok(Some(match checked {
            OtpCheck::Accepted(t) => Proof::Passed(Some(t)),
            OtpCheck::Failed(reason) => Proof::Failed(reason),
        }))
    }

    /// The user has no token at all, in any state.
    pub(super) async fn has_no_token(&self, user: &User) -> Result<bool, EngineError> {
        Ok(self
            .ports
            .store
            .tokens_of(&user.user_ref())
            .await?
            .is_empty())
    }

    /// The first factor of a user without a token under a rollout policy: `passthru` asks for
    /// the user store's password instead, `pass_on_no_token` skips it. Later factors that need
    /// a token are skipped in `after_proof`.
    pub(super) async fn rollout_first(
        &self,
        l: &mut Login<'_>,
        app: &Application,
        user: User,
        tokens: Vec<Token>,
        req: &AuthRequest,
    ) -> Result<Outcome, EngineError> {
        let proof = if app.passthru {
            if let Some(outcome) = self.reserve_attempt(l, 0, FailKind::Password, None).await? {
                return Ok(outcome);
            }
            let proof = self
                .prove_password(l, &user, &req.pass)
                .await?
                .unwrap_or(Proof::Failed(RejectReason::WrongPassword));
            if matches!(proof, Proof::Passed(_)) {
                l.set_note(
                    "passthru: the user has no token; the user store's password passed".into(),
                );
            }
            proof
        } else {
            if let Some(outcome) = self.check_locked(l, 0, None).await? {
                return Ok(outcome);
            }
            l.set_note("pass_on_no_token: the user has no token".into());
            Proof::Passed(None)
        };
        self.after_proof(l, app, 0, user, tokens, proof, None).await
    }

    /// Seed 002's fail-counter clearing: a challenge triggered with the right PIN clears the
    /// fail counter of a token whose limit was reached `failcounter_clear_minutes` ago or more,
    /// as a right PIN and code would (the token's attempt budget starts a new count then
    /// anyway; this makes the counter say so).
    pub(super) async fn clear_lapsed_failcounts(
        &self,
        l: &Login<'_>,
        tokens: &[Token],
    ) -> Result<(), EngineError> {
        let clear = l.snap.settings.failcounter_clear_minutes;
        for t in tokens {
            if clear > 0 && t.fail_count >= t.max_fail && !t.is_locked_by_failcount(l.now, clear) {
                let patch = crate::model::TokenPatch {
                    reset_failcount: true,
                    ..Default::default()
                };
                self.ports.store.update_token(&t.serial, &patch).await?;
            }
        }
        Ok(())
    }

    /// privacyIDEA's challenge-response: the whole answer taken as a token's PIN (for
    /// `password+otp`, as the user's password). The usable tokens it opens: each whose PIN it
    /// is (an empty answer opens the tokens without a PIN), or every token after the right
    /// password. A known user spends the hash an unknown one does (see `waste_time`).
    pub(super) async fn pin_alone(
        &self,
        l: &Login<'_>,
        methods: &[Method],
        user: &User,
        tokens: &[Token],
        pass: &str,
    ) -> Result<Vec<Token>, EngineError> {
        let usable: Vec<&Token> = tokens.iter().filter(|t| t.is_usable_state()).collect();
        let mut opened = Vec::new();
        if methods.contains(&Method::SoftOtp) {
            let mut hashed = false;
            for token in &usable {
                let right = match &token.pin_hash {
                    None => pass.is_empty(),
                    Some(_) if pass.is_empty() => false,
                    Some(hash) => {
                        hashed = true;
                        let right = self.ports.hasher.verify(pass, hash).await?;
                        l.mark_checked();
                        if right {
                            self.upgrade_pin_hash(token, pass, hash).await;
                        }
                        right
                    }
                };
                if right {
                    opened.push((*token).clone());
                }
            }
            if !hashed && !pass.is_empty() {
                self.ports.hasher.waste_verify().await?;
            }
        }
        if opened.is_empty()
            && methods.contains(&Method::PasswordOtp)
            && !pass.is_empty()
            && !usable.is_empty()
            && let Some(Proof::Passed(_)) = self.prove_password(l, user, pass).await?
        {
            opened = usable.iter().map(|t| (*t).clone()).collect();
        }
        Ok(opened)
    }

    pub(super) async fn prove_password_otp(
        &self,
        l: &Login<'_>,
        user: &User,
        tokens: &[Token],
        pass: &str,
    ) -> Result<Option<Proof>, EngineError> {
        let usable: Vec<&Token> = tokens.iter().filter(|t| t.is_usable_state()).collect();
        if usable.is_empty() {
            // A user without a token answers after the time of a password check, as an
            // unknown user does.
            if !pass.is_empty()
                && let Some(source) = l.snap.source(user.source.as_str())
            {
                source.waste_verify().await?;
            }
            return Ok(None);
        }
        let mut lengths: Vec<usize> = usable.iter().map(|t| t.digits.get()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        for len in lengths {
            let Some((password, otp)) = split_pin(pass, len, true) else {
                continue;
            };
            if password.is_empty() {
                continue;
            }
            match self.prove_password(l, user, password).await? {
                Some(Proof::Passed(_)) => {}
                Some(Proof::Failed(RejectReason::SourceUnavailable)) => {
                    return Ok(Some(Proof::Failed(RejectReason::SourceUnavailable)));
                }
                _ => continue,
            }
            let candidates: Vec<(&Token, &str)> = usable
                .iter()
                .filter(|t| t.digits.get() == len)
                .map(|t| (*t, otp))
                .collect();
            let checked = self
                .check_otps(&l.snap.settings, &candidates, l.now)
                .await?;
            l.mark_checked();
            return Ok(Some(match checked {
                OtpCheck::Accepted(t) => Proof::Passed(Some(t)),
                OtpCheck::Failed(reason) => Proof::Failed(reason),
            }));
        }
        Ok(Some(Proof::Failed(RejectReason::WrongPassword)))
    }
}
