//! A login waiting on a sent code or a new MFA password: sending the code again, setting the
//! password the application asks for.

use super::*;
use crate::engine::{Challenged, Engine, EngineError, Outcome, RejectReason, RequestCtx, Snapshot};
use crate::ids::TransactionId;
use crate::model::{Application, Method, Transaction, TxStatus, User};
use crate::store::FailKind;

impl Engine {
    /// Sends the pending factor's code of a transaction again (a new code, which replaces the
    /// old one), by `fallback` when given (seed 003's MFA OTP generate). `identifier`: the
    /// phone number or mail address the caller names, which must be the user's.
    pub async fn resend_code(
        &self,
        id: &TransactionId,
        fallback: Option<&str>,
        identifier: Option<(&str, &str)>,
        ctx: &RequestCtx,
    ) -> Result<Outcome, EngineError> {
        let snap = self.snapshot();
        let lost_before = self.ports.store.lost_writes();
        let mut l = Login {
            transaction: Some(id.clone()),
            fallback: fallback.map(str::to_string),
            ..Login::new(&snap, ctx, self.ports.clock.now())
        };
        let result = self.resend(&mut l, id, identifier).await;
        self.decided(
            &mut l,
            "resend_code",
            result,
            ["code sent again", "code sent again"],
            lost_before,
        )
        .await
    }

    /// A pending transaction, its application and its user, for a request outside the
    /// answer of a factor (sending its code again, setting an MFA password); otherwise the
    /// rejection to answer.
    pub(super) async fn open_pending<'s>(
        &self,
        l: &mut Login<'s>,
        id: &TransactionId,
    ) -> Result<Result<(Transaction, &'s Application, User), Outcome>, EngineError> {
        let Some(tx) = self.ports.store.transaction(id).await? else {
            return Ok(Err(reject(RejectReason::BadTransaction, None)));
        };
        l.login = Some(tx.username.clone());
        l.realm = Some(tx.realm.clone());
        l.app = Some(tx.application.clone());
        if tx.status != TxStatus::Pending || tx.expires_at <= l.now {
            return Ok(Err(reject(RejectReason::BadTransaction, None)));
        }
        if let Some(outcome) = self.elsewhere(l, &tx) {
            return Ok(Err(outcome));
        }
        l.account = Some((tx.realm.0.clone(), tx.username.clone()));
        if let Some(outcome) = self.check_locked(l, tx.next_factor, Some(&tx)).await? {
            return Ok(Err(outcome));
        }
        let snap: &'s Snapshot = l.snap;
        let Some(app) = snap.application(&tx.application) else {
            return Ok(Err(reject(RejectReason::NoApplication, None)));
        };
        if !app.allows_realm(tx.realm.as_str()) {
            return Ok(Err(reject(RejectReason::RealmNotAllowed, None)));
        }
        let user = match self.user_of(l, &tx).await? {
            Ok(user) => user,
            Err(outcome) => return Ok(Err(outcome)),
        };
        l.user = Some(user.clone());
        Ok(Ok((tx, app, user)))
    }

    pub(super) async fn resend(
        &self,
        l: &mut Login<'_>,
        id: &TransactionId,
        identifier: Option<(&str, &str)>,
    ) -> Result<Outcome, EngineError> {
        let (tx, app, user) = match self.open_pending(l, id).await? {
            Ok(open) => open,
            Err(outcome) => return Ok(outcome),
        };
        if let Some((kind, value)) = identifier {
            let same = |own: Option<&String>, norm: fn(&str) -> String| {
                own.is_some_and(|o| !o.trim().is_empty() && norm(o) == norm(value))
            };
            let matches = match kind {
                "mobile" => same(user.phone.as_ref(), |p| {
                    p.chars()
                        .filter(|c| c.is_ascii_digit() || *c == '+')
                        .collect()
                }),
                "email" => same(user.email.as_ref(), |m| m.trim().to_lowercase()),
                _ => false,
            };
            if !matches {
                return Ok(reject(RejectReason::IdentifierMismatch, Some(user)));
            }
        }
        let k = tx.next_factor;
        let Some(factor) = app.factors.get(k as usize) else {
            return Ok(reject(RejectReason::BadTransaction, Some(user)));
        };
        let mut methods = factor.methods_for(&user, tx.realm.as_str());
        // For an MFA password the code proves the user before one is set up or reset: by the
        // mobile channel, or one of the configured fallback channels (mail only if listed).
        let mut fallback = l.fallback.clone();
        if methods.contains(&Method::MfaPassword) {
            methods = vec![Method::SmsOtp];
            if fallback.is_none() && matches!(identifier, Some(("email", _))) {
                fallback = Some("mail".into());
            }
        }
        let Some(pending) = self.pending_code(l, &user, &methods, fallback.as_deref(), k >= 1)?
        else {
            return Ok(reject(RejectReason::NoUsableToken, Some(user)));
        };
        if !self.may_send_code(l, &tx.realm, &user).await? {
            return Ok(reject(RejectReason::SendLimit, Some(user)));
        }
        let code = pending.sent_code(&tx.id, k);
        let message = pending.message_for(&tx.id);
        let moved = self
            .ports
            .store
            .advance_with_code(&tx.id, k, k, &tx.serials, &code, &message)
            .await?;
        self.outbox_signal().notify_one();
        if !moved {
            return Ok(reject(RejectReason::BadTransaction, Some(user)));
        }
        let prompt = pending.prompt.clone();
        Ok(Outcome::Challenge(Box::new(Challenged {
            transaction_id: tx.id.clone(),
            message: prompt.message.clone(),
            prompts: vec![prompt],
            user,
            realm: tx.realm.clone(),
        })))
    }

    /// Sets up (`reset` false: the user has none) or resets (`reset` true) the MFA password of
    /// the user of transaction `id`, whose pending factor is an MFA password, and so answers
    /// that factor. `code`: the code sent to the user for it (`/oauth/mfa/otp/generate`),
    /// required unless the `mfa_skip_otp_validate(_reset)` setting says otherwise. The caller
    /// checked the password against `mfa_password_regex`.
    pub async fn set_mfa_password(
        &self,
        id: &TransactionId,
        password: &str,
        code: Option<&str>,
        reset: bool,
        ctx: &RequestCtx,
    ) -> Result<Outcome, EngineError> {
        let snap = self.snapshot();
        let lost_before = self.ports.store.lost_writes();
        let mut l = Login {
            transaction: Some(id.clone()),
            ..Login::new(&snap, ctx, self.ports.clock.now())
        };
        let action = if reset {
            "mfa_password_reset"
        } else {
            "mfa_password_setup"
        };
        let result = self
            .mfa_password_change(&mut l, id, password, code, reset)
            .await;
        self.decided(
            &mut l,
            action,
            result,
            [
                "MFA password set; authenticated",
                "MFA password set; challenge sent for the next factor",
            ],
            lost_before,
        )
        .await
    }

    pub(super) async fn mfa_password_change(
        &self,
        l: &mut Login<'_>,
        id: &TransactionId,
        password: &str,
        code: Option<&str>,
        reset: bool,
    ) -> Result<Outcome, EngineError> {
        let (tx, app, user) = match self.open_pending(l, id).await? {
            Ok(open) => open,
            Err(outcome) => return Ok(outcome),
        };
        let k = tx.next_factor;
        let asks = app.factors.get(k as usize).is_some_and(|f| {
            f.methods_for(&user, tx.realm.as_str())
                .contains(&Method::MfaPassword)
        });
        if !asks {
            return Ok(reject(RejectReason::WrongFactor, Some(user)));
        }
        let store = &self.ports.store;
        let has = store.mfa_password(&user.user_ref()).await?.is_some();
        if has != reset {
            // Setting up over an existing one, or resetting none.
            return Ok(reject(RejectReason::MfaPasswordState, Some(user)));
        }
        let settings = &l.snap.settings;
        let skip = match reset {
            true => settings.mfa_skip_otp_validate_reset,
            false => settings.mfa_skip_otp_validate,
        };
        if !skip {
            if let Some(outcome) = self.reserve_attempt(l, k, FailKind::Otp, Some(&tx)).await? {
                return Ok(outcome);
            }
            let right = self
                .check_code(l, Some(&tx), code.unwrap_or_default())
                .await?;
            l.mark_checked();
            if right != Some(true) {
                // The attempt stays counted.
                return Ok(reject(RejectReason::WrongOtp, Some(user)));
            }
            self.give_back(l).await?;
        }
        let hash = self.ports.hasher.hash(password).await?;
        store
            .set_mfa_password(&user.user_ref(), &hash, l.now)
            .await?;
        let tokens = self
            .tokens_for(
                app,
                &user,
                &super::AuthRequest::default(),
                Some(&tx.serials),
            )
            .await?;
        self.after_proof(l, app, k, user, tokens, Proof::Passed(None), Some(&tx))
            .await
    }
}
