//! After a factor was proved: the next factor asked for (a challenge with its transaction and
//! prompts) or the login accepted, and whether it proved two kinds of factor.

use super::*;
use crate::engine::{
    Accepted, Challenged, ClientMode, Engine, EngineError, Outcome, Prompt, RejectReason,
};
use crate::ids::{RealmName, Serial, TransactionId};
use crate::model::{Application, Method, Token, TokenKind, Transaction, TxStatus, User};
use crate::rng::random_digits;
use crate::store::StoreError;

impl Engine {
    /// Moves the login on after factor `k` was checked.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn after_proof(
        &self,
        l: &mut Login<'_>,
        app: &Application,
        k: u32,
        user: User,
        tokens: Vec<Token>,
        proof: Proof,
        tx: Option<&Transaction>,
    ) -> Result<Outcome, EngineError> {
        let token = match proof {
            Proof::Passed(token) => token,
            Proof::Failed(reason) => {
                // Only the user's own mistakes count towards the lockout: the attempts taken
                // for anything else are given back.
                if matches!(
                    reason,
                    RejectReason::SourceUnavailable
                        | RejectReason::NoMatchingRule
                        | RejectReason::Declined
                        | RejectReason::NotYetAnswered
                ) {
                    self.give_back(l).await?;
                }
                return Ok(reject(reason, Some(user)));
            }
        };
        if let Some(t) = &token {
            l.serial = Some(t.serial.clone());
        }
        let store = &self.ports.store;
        let mut next = k + 1;
        let realm = l.realm.clone().unwrap_or_else(|| RealmName(String::new()));
        // Factors that only tell the manager (approved OTP in information mode) pass at once.
        // Factors for enrolled users only are skipped by users who are not (seed 003's MFA
        // role), unless MFA is forced.
        while let Some(f) = app.factors.get(next as usize) {
            let methods = f.methods_for(&user, realm.as_str());
            let informs = methods
                .iter()
                .any(|m| *m == Method::ApprovedOtp && !self.waits_for_click(l, *m));
            if informs {
                if !self.inform_manager(l, &user).await? {
                    // Not the user's mistake: the factor before was answered right.
                    self.give_back(l).await?;
                    return Ok(reject(RejectReason::NoUsableToken, Some(user)));
                }
            } else if app.rollout() && f.needs_token() && self.has_no_token(&user).await? {
                let policy = if app.passthru {
                    "passthru"
                } else {
                    "pass_on_no_token"
                };
                l.set_note(format!(
                    "{policy}: the user has no token; factor {} skipped",
                    next + 1
                ));
            } else if !(f.if_enrolled
                && !l.snap.settings.forced_mfa
                && !self.enrolled(&user, &methods).await?)
            {
                break;
            }
            next += 1;
        }
        if app.factors.get(next as usize).is_some() {
            // This factor was answered right; the failures before it count on until the login
            // passes.
            self.give_back(l).await?;
            return self.challenge(l, app, next, user, &tokens, tx, k).await;
        }
        if let Some(tx) = tx
            && !store.advance_transaction(&tx.id, k, k, &[], true).await?
        {
            self.give_back(l).await?;
            return Ok(reject(RejectReason::BadTransaction, Some(user)));
        }
        self.clear_account(l).await?;
        // Only single sign-on asserts it: the other doors' acceptances carry no extra lookups.
        let mfa = l.ctx.door == crate::engine::Door::Web
            && self
                .two_kinds_proven(l, app, k, &user, token.as_deref())
                .await?;
        Ok(Outcome::Accept(Box::new(Accepted {
            user,
            realm,
            application: app.name.clone(),
            serial: token.as_ref().map(|t| t.serial.clone()),
            token_kind: token.as_ref().map(|t| t.kind),
            mfa,
            message: match &token {
                Some(_) => "matching 1 tokens".into(),
                None => "authenticated".into(),
            },
        })))
    }

    /// Whether a login that passed factor `last` of `app` proved two kinds of factor —
    /// something the user knows (a password, a token PIN, an MFA password) and something the
    /// user holds (a token, a phone, a mailbox): the REFEDS MFA profile single sign-on asserts.
    /// Factors the user skips (rollout policies for users without a token, `if_enrolled`
    /// factors of users not enrolled, a manager told in information mode) prove nothing; a
    /// factor with alternatives proves only what all of them prove; a token PIN counts when it
    /// was checked with the OTP of the one factor the login had.
    pub(super) async fn two_kinds_proven(
        &self,
        l: &Login<'_>,
        app: &Application,
        last: u32,
        user: &User,
        token: Option<&Token>,
    ) -> Result<bool, EngineError> {
        const KNOW: u8 = 1;
        const HOLD: u8 = 2;
        let realm = l.realm.as_ref().map(|r| r.as_str()).unwrap_or_default();
        let mut proven = 0u8;
        for (i, f) in app.factors.iter().enumerate().take(last as usize + 1) {
            let methods = f.methods_for(user, realm);
            let skipped = methods
                .iter()
                .any(|m| *m == Method::ApprovedOtp && !self.waits_for_click(l, *m))
                || (app.rollout() && f.needs_token() && self.has_no_token(user).await?)
                || (f.if_enrolled
                    && !l.snap.settings.forced_mfa
                    && !self.enrolled(user, &methods).await?);
            if skipped || methods.is_empty() {
                continue;
            }
            let pin_checked = i == 0
                && last == 0
                && token.is_some_and(|t| t.pin_hash.as_deref().is_some_and(|h| !h.is_empty()));
            proven |= methods
                .iter()
                .map(|m| match m {
                    Method::Password | Method::MfaPassword => KNOW,
                    Method::PasswordOtp => KNOW | HOLD,
                    Method::SoftOtp if pin_checked => KNOW | HOLD,
                    Method::SoftOtp | Method::SmsOtp | Method::MailOtp | Method::EmailLink => HOLD,
                    // The manager's click proves nothing the user has.
                    Method::ApprovedOtp => 0,
                })
                .fold(KNOW | HOLD, |all, kinds| all & kinds);
        }
        Ok(proven == KNOW | HOLD)
    }

    /// Asks for factor `next`: the ways the user can answer it, a code sent if the factor's
    /// method sends one. Moves `tx` on from factor `from`, or starts a transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn challenge(
        &self,
        l: &mut Login<'_>,
        app: &Application,
        next: u32,
        user: User,
        tokens: &[Token],
        tx: Option<&Transaction>,
        from: u32,
    ) -> Result<Outcome, EngineError> {
        let realm = l.realm.clone().unwrap_or_else(|| RealmName(String::new()));
        let Some(factor) = app.factors.get(next as usize) else {
            return Ok(reject(RejectReason::NoApplication, Some(user)));
        };
        // An account locked for its MFA step is not asked (nor sent a code) again.
        if next >= 1
            && l.snap.settings.mfa_account_locking
            && let Some(outcome) = self.check_locked(l, next, None).await?
        {
            return Ok(outcome);
        }
        let methods = factor.methods_for(&user, realm.as_str());
        let mut prompts = prompts_for(&methods, tokens);
        if methods.contains(&Method::MfaPassword) {
            let has = self
                .ports
                .store
                .mfa_password(&user.user_ref())
                .await?
                .is_some();
            prompts.push(Prompt {
                serial: None,
                kind: if has {
                    "mfa_password"
                } else {
                    "mfa_password_setup"
                }
                .into(),
                client_mode: ClientMode::Interactive,
                message: if has {
                    "Please enter your MFA password"
                } else {
                    "Please set up your MFA password"
                }
                .into(),
            });
        }
        let mut pending =
            self.pending_code(l, &user, &methods, l.fallback.as_deref(), next >= 1)?;
        let mut limited = false;
        if pending.is_some() && !self.may_send_code(l, &realm, &user).await? {
            pending = None;
            limited = true;
        }
        if pending.is_none() && !limited {
            pending = self.pending_link(l, &user, &methods).await?;
        }
        if let Some(p) = &pending {
            prompts.push(p.prompt.clone());
        }
        if prompts.is_empty() {
            let reason = if limited {
                RejectReason::SendLimit
            } else {
                RejectReason::NoUsableToken
            };
            return Ok(reject(reason, Some(user)));
        }
        let serials: Vec<Serial> = prompts.iter().filter_map(|p| p.serial.clone()).collect();
        let store = &self.ports.store;
        let id = match tx {
            Some(tx) => {
                let moved = match pending {
                    Some(p) => {
                        let code = p.sent_code(&tx.id, next);
                        let message = p.message_for(&tx.id);
                        let moved = store
                            .advance_with_code(&tx.id, from, next, &serials, &code, &message)
                            .await?;
                        self.outbox_signal().notify_one();
                        moved
                    }
                    None => {
                        store
                            .advance_transaction(&tx.id, from, next, &serials, false)
                            .await?
                    }
                };
                if !moved {
                    return Ok(reject(RejectReason::BadTransaction, Some(user)));
                }
                tx.id.clone()
            }
            None => {
                self.create_transaction(l, app, &user, next, serials, pending)
                    .await?
            }
        };
        l.transaction = Some(id.clone());
        let message = join_messages(&prompts);
        Ok(Outcome::Challenge(Box::new(Challenged {
            transaction_id: id,
            prompts,
            message,
            user,
            realm,
        })))
    }

    pub(super) async fn create_transaction(
        &self,
        l: &Login<'_>,
        app: &Application,
        user: &User,
        next: u32,
        serials: Vec<Serial>,
        pending: Option<crate::engine::sent::PendingCode>,
    ) -> Result<TransactionId, EngineError> {
        let settings = &l.snap.settings;
        // A login through the API is a session of seed 003's length; other doors keep the
        // challenge validity their clients expect.
        let validity = match (l.ctx.door, next) {
            (crate::engine::Door::Api, 0) => i64::from(settings.api_session_minutes) * 60,
            (crate::engine::Door::Api, _) => i64::from(settings.mfa_session_minutes) * 60,
            _ => i64::from(settings.challenge_validity_seconds),
        };
        for _ in 0..5 {
            let Some(id) =
                TransactionId::parse(&random_digits(self.ports.rng.as_ref(), TransactionId::LEN))
            else {
                continue;
            };
            let tx = Transaction {
                id: id.clone(),
                user: user.user_ref(),
                username: user.username.clone(),
                realm: l.realm.clone().unwrap_or_else(|| RealmName(String::new())),
                application: app.name.clone(),
                next_factor: next,
                status: TxStatus::Pending,
                serials: serials.clone(),
                code: pending.as_ref().map(|p| p.sent_code(&id, next)),
                created_at: l.now,
                // A sent code may be valid longer than a challenge of a token.
                expires_at: l.now
                    + validity.max(pending.as_ref().map_or(0, |p| p.message.not_after - l.now)),
                origin: Some(self.origin_of(l)),
            };
            let message = pending.as_ref().map(|p| p.message_for(&id));
            match self
                .ports
                .store
                .create_transaction(&tx, message.as_ref())
                .await
            {
                Ok(()) => {
                    if message.is_some() {
                        self.outbox_signal().notify_one();
                    }
                    return Ok(id);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Backend("could not allocate a unique transaction id".into()).into())
    }
}

/// The ways the user can answer a factor proven by `methods`.
pub(super) fn prompts_for(methods: &[Method], tokens: &[Token]) -> Vec<Prompt> {
    let mut prompts = Vec::new();
    for method in methods {
        match method {
            Method::Password => prompts.push(Prompt {
                serial: None,
                kind: "password".into(),
                client_mode: ClientMode::Interactive,
                message: "Please enter your password".into(),
            }),
            // The prompt of a sent code or link comes with it (see `challenge`); approved OTP
            // in information mode needs no answer.
            // The MFA password's prompt depends on whether the user has one (see `challenge`).
            Method::SmsOtp
            | Method::MailOtp
            | Method::EmailLink
            | Method::ApprovedOtp
            | Method::MfaPassword => {}
            Method::SoftOtp | Method::PasswordOtp => {
                for t in tokens.iter().filter(|t| t.is_usable_state()) {
                    if prompts
                        .iter()
                        .any(|p: &Prompt| p.serial.as_ref() == Some(&t.serial))
                    {
                        continue;
                    }
                    prompts.push(Prompt {
                        serial: Some(t.serial.clone()),
                        kind: t.kind.as_str().into(),
                        client_mode: ClientMode::Interactive,
                        message: match (method, t.kind) {
                            (Method::PasswordOtp, _) => {
                                "Please enter your password followed by the OTP".into()
                            }
                            (_, TokenKind::Hotp | TokenKind::Totp) => {
                                "Please enter the OTP from your authenticator".into()
                            }
                        },
                    });
                }
            }
        }
    }
    prompts
}

/// The unique messages of the prompts, joined with ", " (privacyIDEA's `detail.message`).
pub(super) fn join_messages(prompts: &[Prompt]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for p in prompts {
        if !seen.contains(&p.message.as_str()) {
            seen.push(&p.message);
        }
    }
    seen.join(", ")
}
