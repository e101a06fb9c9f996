//! The login state machine: first leg, following legs, triggered challenges and polling.

use super::otp::{OtpCheck, split_pin};
use super::{
    Accepted, AuthRequest, Challenged, ClientMode, Engine, EngineError, Outcome, PollStatus,
    Prompt, RejectReason, Rejected, RequestCtx, Snapshot,
};
use crate::ids::{AppName, RealmName, Serial, TransactionId};
use crate::model::{
    Application, AuditRecord, CodeKind, Factor, Method, Token, TokenKind, Transaction, TxOrigin,
    TxStatus, User,
};
use crate::rng::random_digits;
use crate::source::SourceError;
use crate::store::{FailKind, StoreError};

/// Where a login stands while the engine works on it, for the decision and its audit record.
pub(crate) struct Login<'a> {
    pub(crate) snap: &'a Snapshot,
    pub(crate) ctx: &'a RequestCtx,
    pub(crate) now: i64,
    login: Option<String>,
    pub(crate) realm: Option<RealmName>,
    pub(crate) app: Option<AppName>,
    user: Option<User>,
    serial: Option<Serial>,
    transaction: Option<TransactionId>,
    /// The account whose budgets answers count against: (realm, login name), the account's own
    /// name once the user is found.
    pub(crate) account: Option<(String, String)>,
    /// The attempts this leg took from budgets before checking its answer.
    pub(crate) held: Vec<crate::lockout::Reservation>,
    /// Which attempt of how many the answer was (for the audit record of a wrong one).
    pub(crate) attempt: Option<(u32, u32)>,
    /// A secret was compared with what the user typed (so a fault after it gives back no
    /// attempt: a guess was made).
    checked: std::sync::atomic::AtomicBool,
    /// More about the decision for the audit record (why a directory could not be asked).
    note: std::sync::Mutex<Option<String>>,
    /// The channel the request asked codes to be sent by (`fallbackChannel`).
    fallback: Option<String>,
}

impl<'a> Login<'a> {
    fn new(snap: &'a Snapshot, ctx: &'a RequestCtx, now: i64) -> Self {
        Login {
            snap,
            ctx,
            now,
            login: None,
            realm: None,
            app: None,
            user: None,
            serial: None,
            transaction: None,
            account: None,
            held: Vec::new(),
            attempt: None,
            checked: Default::default(),
            note: Default::default(),
            fallback: None,
        }
    }

    fn set_note(&self, note: String) {
        if let Ok(mut n) = self.note.lock() {
            *n = Some(note);
        }
    }

    fn clear_note(&self) {
        if let Ok(mut n) = self.note.lock() {
            *n = None;
        }
    }

    fn note(&self) -> Option<String> {
        self.note.lock().ok().and_then(|n| n.clone())
    }

    /// Notes that a secret was compared with the answer.
    fn mark_checked(&self) {
        self.checked
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn was_checked(&self) -> bool {
        self.checked.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The result of checking one factor.
enum Proof {
    Passed(Option<Box<Token>>),
    Failed(RejectReason),
}

/// Triggering challenges for a user (`/validate/triggerchallenge`).
#[derive(Debug)]
pub enum Triggered {
    /// Challenges were created (possibly none: the user has no token to challenge).
    Challenges(Option<Box<Challenged>>),
    UnknownUser,
}

impl Engine {
    /// Decides one leg of a login.
    pub async fn authenticate(
        &self,
        req: &AuthRequest,
        ctx: &RequestCtx,
    ) -> Result<Outcome, EngineError> {
        let snap = self.snapshot();
        let lost_before = self.ports.store.lost_writes();
        let mut login = Login {
            serial: req.serial.clone(),
            transaction: req.transaction_id.clone(),
            fallback: req.fallback_channel.clone(),
            ..Login::new(&snap, ctx, self.ports.clock.now())
        };
        let result = match &req.transaction_id {
            Some(id) => self.next_leg(&mut login, req, id).await,
            None => self.first_leg(&mut login, req).await,
        };
        self.decided(
            &mut login,
            "authenticate",
            result,
            ["authenticated", "challenge sent for the next factor"],
            lost_before,
        )
        .await
    }

    /// Records the decision `result` of `action` (`reasons`: of an accept, of a challenge) and
    /// makes sure the deciding writes were kept.
    async fn decided(
        &self,
        l: &mut Login<'_>,
        action: &str,
        result: Result<Outcome, EngineError>,
        reasons: [&str; 2],
        lost_before: u64,
    ) -> Result<Outcome, EngineError> {
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                // Nothing was decided: the attempts taken for it are given back (a request
                // shed because too many passwords wait costs the user nothing) — unless a
                // secret was compared already, which was a guess.
                if !l.was_checked() {
                    self.give_back(l).await.ok();
                }
                self.record_action(l, action, "error", &e.to_string())
                    .await
                    .ok();
                return Err(e);
            }
        };
        let reason = match &outcome {
            Outcome::Reject(r) => r.reason.as_str(),
            Outcome::Accept(_) => reasons[0],
            Outcome::Challenge(_) => reasons[1],
        };
        self.record_action(l, action, outcome.result_str(), reason)
            .await?;
        // The deciding writes of this login are committed with (or before) its audit record.
        crate::store::ensure_kept(self.ports.store.as_ref(), lost_before)?;
        Ok(outcome)
    }

    /// The audit record of a decision about a login.
    async fn record_action(
        &self,
        l: &Login<'_>,
        action: &str,
        result: &str,
        reason: &str,
    ) -> Result<(), EngineError> {
        self.audit_decision(AuditRecord {
            id: 0,
            at_ms: self.ports.clock.now_millis(),
            actor: l.ctx.actor.clone(),
            action: action.into(),
            door: l.ctx.door.as_str().into(),
            user: l.login.clone(),
            realm: l.realm.as_ref().map(|r| r.0.clone()),
            serial: l.serial.as_ref().map(|s| s.0.clone()),
            application: l.app.as_ref().map(|a| a.0.clone()),
            transaction_id: l.transaction.as_ref().map(|t| t.as_str().to_string()),
            client_ip: l.ctx.client_ip.map(|ip| ip.to_string()),
            user_agent: l.ctx.user_agent.clone(),
            result: result.into(),
            reason: {
                let mut text = match l.note() {
                    Some(note) => format!("{reason}: {note}"),
                    None => reason.to_string(),
                };
                // A wrong answer says how much of its budget is used.
                if let Some((n, max)) = l.attempt
                    && result == "reject"
                {
                    text.push_str(&format!(" (attempt {n} of {max})"));
                }
                text
            },
        })
        .await
    }

    fn application<'s>(&self, snap: &'s Snapshot, ctx: &RequestCtx) -> Option<&'s Application> {
        let name = ctx
            .application
            .clone()
            .unwrap_or_else(|| AppName(snap.settings.validate_application.clone()));
        snap.application(&name)
    }

    async fn first_leg(
        &self,
        l: &mut Login<'_>,
        req: &AuthRequest,
    ) -> Result<Outcome, EngineError> {
        let snap = l.snap;
        let Some(app) = self.application(snap, l.ctx) else {
            return Ok(reject(RejectReason::NoApplication, None));
        };
        l.app = Some(app.name.clone());

        // Names with control characters are refused before anything is looked up or counted.
        if let Some(bad) = bad_names(req) {
            l.login = Some(bad);
            return Ok(reject(RejectReason::BadLoginName, None));
        }
        // Who is logging in: the user named, or the owner of the token named.
        let (login_name, realm_name) = match req.user.as_deref().filter(|u| !u.is_empty()) {
            Some(user) => {
                let (login, realm) = snap.split_login(user, req.realm.as_deref());
                (login, realm)
            }
            None => match &req.serial {
                Some(serial) => match self.owner_of(snap, serial).await {
                    Ok(Some((user, realm))) => (user.username.clone(), Some(realm.0)),
                    Ok(None) => {
                        // No such token (or nobody's): as long as the check of a real one.
                        let realm = snap.realm(&snap.settings.default_realm);
                        let source = realm
                            .and_then(|r| r.sources.first())
                            .and_then(|s| snap.source(s.as_str()));
                        self.waste_time(
                            source.map(|s| s.as_ref()),
                            app,
                            &req.pass,
                            snap.settings.default_otp_length as usize,
                        )
                        .await?;
                        return Ok(reject(RejectReason::UnknownUser, None));
                    }
                    Err(e) => return self.unavailable(l, e, None),
                },
                None => return Ok(reject(RejectReason::MissingInput, None)),
            },
        };
        l.login = Some(login_name.clone());
        let realm_name = realm_name.unwrap_or_else(|| snap.settings.default_realm.clone());
        let Some(realm) = snap.realm(&realm_name) else {
            return Ok(reject(RejectReason::UnknownRealm, None));
        };
        l.realm = Some(realm.name.clone());
        // Before anything is looked up or counted: the same answer for every name.
        if !app.allows_realm(realm.name.as_str()) {
            return Ok(reject(RejectReason::RealmNotAllowed, None));
        }

        let user = match self.find_user(snap, &realm.name, &login_name).await {
            Ok(user) => user,
            Err(e) => return self.unavailable(l, e, None),
        };
        let user = match user {
            Some(u) if u.is_active(l.now) => u,
            other => {
                // As for an existing account: an attempt taken from the name's budget, the time
                // a check would take, and a failure counted.
                l.account = Some((realm.name.0.clone(), login_name.clone()));
                if let Some(outcome) = self.as_if_checked(l, app, realm, &req.pass).await? {
                    return Ok(outcome);
                }
                // A rollout policy: a name nobody has passes at the doors of privacyIDEA's
                // clients (after the same work, the attempt given back).
                if other.is_none()
                    && app.pass_on_no_user
                    && matches!(l.ctx.door, super::Door::Validate | super::Door::Radius)
                {
                    self.give_back(l).await?;
                    l.set_note("pass_on_no_user: no user source knows the name".into());
                    return Ok(Outcome::Accept(Box::new(Accepted {
                        user: User::new(
                            crate::ids::SourceName::from(""),
                            crate::ids::UserId::from(login_name.as_str()),
                            login_name.clone(),
                        ),
                        realm: realm.name.clone(),
                        application: app.name.clone(),
                        serial: None,
                        token_kind: None,
                        mfa: false,
                        message: "authenticated".into(),
                    })));
                }
                let reason = match &other {
                    None => RejectReason::UnknownUser,
                    Some(u) if !u.enabled => RejectReason::UserDisabled,
                    Some(_) => RejectReason::UserExpired,
                };
                return Ok(reject(reason, other));
            }
        };
        l.user = Some(user.clone());
        // The budget is the account's, whatever form of its name was typed (a directory finds
        // `alice`, `ALICE`, `alice ` or alice@corp.example for the same entry).
        l.account = Some((realm.name.0.clone(), user.username.clone()));
        // Routes send users who match to another application.
        let app = match app
            .routes
            .iter()
            .find(|r| r.when.holds(&user, realm.name.as_str()))
        {
            Some(route) => match snap.application(&route.application) {
                Some(routed) => routed,
                None => return Ok(reject(RejectReason::NoApplication, Some(user))),
            },
            None => app,
        };
        l.app = Some(app.name.clone());
        // Where a route led the user to an application that does not take the user's realm, or
        // a validate request without an agent's token (the door checked only the application it
        // chose): refused as an unknown user is, counted and after the same work, so that the
        // answer tells nothing about the account.
        let refusal = if !app.allows_realm(realm.name.as_str()) {
            Some(RejectReason::RealmNotAllowed)
        } else if app.require_client_token
            && l.ctx.door == super::Door::Validate
            && l.ctx.client.is_none()
        {
            Some(RejectReason::ClientTokenRequired)
        } else {
            None
        };
        if let Some(reason) = refusal {
            if let Some(outcome) = self.as_if_checked(l, app, realm, &req.pass).await? {
                return Ok(outcome);
            }
            return Ok(reject(reason, Some(user)));
        }
        let tokens = self.tokens_for(app, &user, req, None).await?;
        let Some(factor) = app.factors.first() else {
            return Ok(reject(RejectReason::NoApplication, Some(user)));
        };
        // Rollout policies: a user with no token at all does not answer a first factor that
        // needs one (asked of the store, not of the request's filters).
        if app.rollout() && factor.needs_token() && self.has_no_token(&user).await? {
            return self.rollout_first(l, app, user, tokens, req).await;
        }
        // A factor proven by a code sent now: send it and ask for it (privacyIDEA's "an empty
        // pass triggers the challenge"), unless what was typed can prove another method.
        let methods = factor.methods_for(&user, realm.name.as_str());
        let sends_now = |m: &Method| m.channel().is_some() || self.waits_for_click(l, *m);
        let sends = methods.iter().any(sends_now);
        let only_sends = methods.iter().all(sends_now);
        if req.code_first && !(sends && only_sends) {
            return Ok(reject(RejectReason::WrongFactor, Some(user)));
        }
        if sends && (only_sends || req.pass.is_empty()) {
            // Nothing is checked, a code is sent: not to a locked account.
            if let Some(outcome) = self.check_locked(l, 0, None).await? {
                return Ok(outcome);
            }
            return self.challenge(l, app, 0, user, &tokens, None, 0).await;
        }
        if let Some(outcome) = self
            .reserve_attempt(l, 0, factor_fail_kind(factor), None)
            .await?
        {
            return Ok(outcome);
        }
        let proof = self
            .prove(l, factor, &user, &tokens, &req.pass, !req.otp_only, None)
            .await?;
        // Challenge-response: what did not pass as PIN and code may be the PIN alone.
        if app.challenge_response
            && !req.otp_only
            && matches!(
                proof,
                Proof::Failed(
                    RejectReason::WrongPin
                        | RejectReason::WrongPassword
                        | RejectReason::NoUsableToken
                )
            )
        {
            let opened = self
                .pin_alone(l, &methods, &user, &tokens, &req.pass)
                .await?;
            if !opened.is_empty() {
                // The PIN was right: no failure of the user's, the code is asked for next.
                self.give_back(l).await?;
                self.clear_lapsed_failcounts(l, &opened).await?;
                return self.challenge(l, app, 0, user, &opened, None, 0).await;
            }
        }
        self.after_proof(l, app, 0, user, tokens, proof, None).await
    }

    async fn next_leg(
        &self,
        l: &mut Login<'_>,
        req: &AuthRequest,
        id: &TransactionId,
    ) -> Result<Outcome, EngineError> {
        let snap = l.snap;
        let Some(tx) = self.ports.store.transaction(id).await? else {
            return Ok(reject(RejectReason::BadTransaction, None));
        };
        l.login = Some(tx.username.clone());
        l.realm = Some(tx.realm.clone());
        l.app = Some(tx.application.clone());
        // Answered and declined: a link was clicked; the factor's check decides.
        if tx.status == TxStatus::Completed || tx.expires_at <= l.now {
            return Ok(reject(RejectReason::BadTransaction, None));
        }
        if let Some(outcome) = self.elsewhere(l, &tx) {
            return Ok(outcome);
        }
        if bad_names(req).is_some() {
            return Ok(reject(RejectReason::BadLoginName, None));
        }
        // The client names the user again; it must be the user the transaction is for (by
        // any name the user's source knows it by: a UPN for a sAMAccountName, say).
        if let Some(user) = req.user.as_deref().filter(|u| !u.is_empty()) {
            let (login, realm) = snap.split_login(user, req.realm.as_deref());
            let realm_ok = realm.is_none_or(|r| r.eq_ignore_ascii_case(tx.realm.as_str()));
            let same = realm_ok
                && (login.eq_ignore_ascii_case(&tx.username)
                    || match self.find_user(snap, &tx.realm, &login).await {
                        Ok(found) => found.is_some_and(|u| u.user_ref() == tx.user),
                        Err(e) => return self.unavailable(l, e, None),
                    });
            if !same {
                return Ok(reject(RejectReason::BadTransaction, None));
            }
        }
        let Some(app) = snap.application(&tx.application) else {
            return Ok(reject(RejectReason::NoApplication, None));
        };
        if !app.allows_realm(tx.realm.as_str()) {
            return Ok(reject(RejectReason::RealmNotAllowed, None));
        }
        l.account = Some((tx.realm.0.clone(), tx.username.clone()));
        let k = tx.next_factor;
        let Some(factor) = app.factors.get(k as usize) else {
            return Ok(reject(RejectReason::BadTransaction, None));
        };
        // A link's factor is polled until it is clicked: polls are no tries.
        let polled = factor.all_methods().all(Method::is_link);
        let refused = match polled {
            true => self.check_locked(l, k, Some(&tx)).await?,
            false => {
                self.reserve_attempt(l, k, factor_fail_kind(factor), Some(&tx))
                    .await?
            }
        };
        if let Some(outcome) = refused {
            return Ok(outcome);
        }
        let user = match self.user_of(l, &tx).await? {
            Ok(user) => user,
            Err(outcome) => {
                self.give_back(l).await?;
                return Ok(outcome);
            }
        };
        l.user = Some(user.clone());
        let tokens = self.tokens_for(app, &user, req, Some(&tx.serials)).await?;
        let proof = self
            .prove(l, factor, &user, &tokens, &req.pass, false, Some(&tx))
            .await?;
        self.after_proof(l, app, k, user, tokens, proof, Some(&tx))
            .await
    }

    /// The user a transaction is for, if still active; otherwise the rejection to answer.
    async fn user_of(
        &self,
        l: &mut Login<'_>,
        tx: &Transaction,
    ) -> Result<Result<User, Outcome>, EngineError> {
        let snap = l.snap;
        let cached = self
            .cached_user(snap, &tx.realm, &tx.username)
            .filter(|u| u.user_ref() == tx.user);
        let user = match (cached, snap.source(tx.user.source.as_str())) {
            (Some(user), _) => Some(user),
            (None, Some(source)) => match source.get(&tx.user.id).await {
                Ok(user) => user,
                Err(e) => return self.unavailable(l, e.into(), None).map(Err),
            },
            (None, None) => None,
        };
        let user = match user {
            Some(u) if u.is_active(l.now) => u,
            Some(u) => {
                let reason = if u.enabled {
                    RejectReason::UserExpired
                } else {
                    RejectReason::UserDisabled
                };
                return Ok(Err(reject(reason, Some(u))));
            }
            None => return Ok(Err(reject(RejectReason::UnknownUser, None))),
        };
        Ok(Ok(user))
    }

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
    async fn open_pending<'s>(
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

    async fn resend(
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

    async fn mfa_password_change(
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

    /// Moves the login on after factor `k` was checked.
    #[allow(clippy::too_many_arguments)]
    async fn after_proof(
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
        let mfa = l.ctx.door == super::Door::Web
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
    async fn two_kinds_proven(
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
    async fn challenge(
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

    async fn create_transaction(
        &self,
        l: &Login<'_>,
        app: &Application,
        user: &User,
        next: u32,
        serials: Vec<Serial>,
        pending: Option<super::sent::PendingCode>,
    ) -> Result<TransactionId, EngineError> {
        let settings = &l.snap.settings;
        // A login through the API is a session of seed 003's length; other doors keep the
        // challenge validity their clients expect.
        let validity = match (l.ctx.door, next) {
            (super::Door::Api, 0) => i64::from(settings.api_session_minutes) * 60,
            (super::Door::Api, _) => i64::from(settings.mfa_session_minutes) * 60,
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

    /// Checks one factor. `with_pin`: the OTP is preceded (or followed) by the token PIN; true
    /// only for the first factor of a login. `tx`: the transaction whose sent code may answer.
    #[allow(clippy::too_many_arguments)]
    async fn prove(
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

    async fn prove_password(
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
    async fn prove_mfa_password(
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
    async fn enrolled(&self, user: &User, methods: &[Method]) -> Result<bool, EngineError> {
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

    async fn prove_soft_otp(
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
    async fn has_no_token(&self, user: &User) -> Result<bool, EngineError> {
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
    async fn rollout_first(
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
    async fn clear_lapsed_failcounts(
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
    async fn pin_alone(
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

    async fn prove_password_otp(
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

    /// The user's OTP tokens the request may use, when the application needs them.
    async fn tokens_for(
        &self,
        app: &Application,
        user: &User,
        req: &AuthRequest,
        challenged: Option<&[Serial]>,
    ) -> Result<Vec<Token>, EngineError> {
        let needs_tokens = app
            .factors
            .iter()
            .any(|f| f.all_methods().any(|m| m.uses_otp()));
        if !needs_tokens {
            return Ok(Vec::new());
        }
        let mut tokens = self.ports.store.tokens_of(&user.user_ref()).await?;
        tokens.retain(|t| {
            req.serial.as_ref().is_none_or(|s| *s == t.serial)
                && req.token_kind.is_none_or(|k| k == t.kind)
                && challenged.is_none_or(|c| c.is_empty() || c.contains(&t.serial))
        });
        Ok(tokens)
    }

    async fn owner_of(
        &self,
        snap: &Snapshot,
        serial: &Serial,
    ) -> Result<Option<(User, RealmName)>, EngineError> {
        let Some(token) = self.ports.store.token(serial).await? else {
            return Ok(None);
        };
        let Some(owner) = token.owner else {
            return Ok(None);
        };
        let Some(source) = snap.source(owner.source.as_str()) else {
            return Ok(None);
        };
        let Some(user) = source.get(&owner.id).await? else {
            return Ok(None);
        };
        Ok(snap
            .realm_of_source(owner.source.as_str())
            .map(|realm| (user, realm)))
    }

    /// A refusal that must look like a check of the first factor: an attempt taken from the
    /// account's budget (the lock's answer when there is none left), then the time a check
    /// would take.
    async fn as_if_checked(
        &self,
        l: &mut Login<'_>,
        app: &Application,
        realm: &crate::model::Realm,
        pass: &str,
    ) -> Result<Option<Outcome>, EngineError> {
        let kind = app
            .factors
            .first()
            .map_or(FailKind::Password, factor_fail_kind);
        if let Some(outcome) = self.reserve_attempt(l, 0, kind, None).await? {
            return Ok(Some(outcome));
        }
        let snap = l.snap;
        let source = realm.sources.first().and_then(|s| snap.source(s.as_str()));
        self.waste_time(
            source.map(|s| s.as_ref()),
            app,
            pass,
            snap.settings.default_otp_length as usize,
        )
        .await?;
        Ok(None)
    }

    /// Spends the time a real check would take, so that unknown users are not told apart by
    /// timing.
    /// A password check is wasted in the realm's first user source (an Argon2id hash for local
    /// users, a bind for a directory).
    async fn waste_time(
        &self,
        source: Option<&dyn crate::source::UserSource>,
        app: &Application,
        pass: &str,
        otp_length: usize,
    ) -> Result<(), EngineError> {
        let first = app.factors.first();
        // `passthru` checks the password of a user without a token.
        let hashes = match first {
            Some(f) => f
                .all_methods()
                .any(|m| matches!(m, Method::Password | Method::PasswordOtp)),
            None => false,
        } || (app.passthru && !pass.is_empty());
        // Anything longer than an OTP is taken as PIN + OTP, which costs one hash too (see
        // prove_soft_otp).
        let pin_present = pass.len() > otp_length;
        match source {
            Some(source) if hashes => source.waste_verify().await?,
            _ if hashes || pin_present => self.ports.hasher.waste_verify().await?,
            _ => {}
        }
        // Challenge-response also tries the whole answer as the PIN (see `pin_alone`).
        let pin_alone = first.is_some_and(|f| f.all_methods().any(|m| m.uses_otp()));
        if app.challenge_response && pin_alone && !pass.is_empty() {
            self.ports.hasher.waste_verify().await?;
        }
        Ok(())
    }

    /// `/validate/triggerchallenge`: challenges every usable OTP token of the user for the
    /// application's first OTP factor. The caller (a service account) vouches for the factors
    /// before it.
    pub async fn trigger_challenge(
        &self,
        user: &str,
        realm: Option<&str>,
        serial: Option<&Serial>,
        fallback: Option<&str>,
        ctx: &RequestCtx,
    ) -> Result<Triggered, EngineError> {
        let snap = self.snapshot();
        let now = self.ports.clock.now();
        if !crate::ids::login_name_ok(user) || !realm.is_none_or(crate::ids::login_name_ok) {
            let l = Login {
                login: Some(crate::ids::escape_controls(user)),
                ..Login::new(&snap, ctx, now)
            };
            self.record_trigger(&l, "error", RejectReason::BadLoginName.as_str())
                .await?;
            return Ok(Triggered::UnknownUser);
        }
        let (login_name, realm_name) = snap.split_login(user, realm);
        let realm_name = realm_name.unwrap_or_else(|| snap.settings.default_realm.clone());
        let mut l = Login {
            login: Some(login_name.clone()),
            serial: serial.cloned(),
            ..Login::new(&snap, ctx, now)
        };
        let Some(realm) = snap.realm(&realm_name) else {
            self.record_trigger(&l, "error", "unknown realm").await?;
            return Ok(Triggered::UnknownUser);
        };
        l.realm = Some(realm.name.clone());
        let found = match self.find_user(&snap, &realm.name, &login_name).await {
            Ok(found) => found,
            Err(e) => {
                let detail = super::unavailable_detail(&e).ok_or(e)?;
                self.record_trigger(&l, "error", &detail).await?;
                return Ok(Triggered::UnknownUser);
            }
        };
        let Some(user) = found else {
            self.record_trigger(&l, "error", "unknown user").await?;
            return Ok(Triggered::UnknownUser);
        };
        l.user = Some(user.clone());
        let Some(app) = self.application(&snap, ctx) else {
            self.record_trigger(&l, "error", "application not configured")
                .await?;
            return Ok(Triggered::Challenges(None));
        };
        l.app = Some(app.name.clone());
        if !app.allows_realm(realm.name.as_str()) {
            self.record_trigger(&l, "error", RejectReason::RealmNotAllowed.as_str())
                .await?;
            return Ok(Triggered::Challenges(None));
        }
        // A locked account is sent no code.
        l.account = Some((realm.name.0.clone(), user.username.clone()));
        if self.check_locked(&l, 0, None).await?.is_some() {
            self.record_trigger(&l, "error", RejectReason::Locked.as_str())
                .await?;
            return Ok(Triggered::Challenges(None));
        }
        let realm_str = realm.name.as_str();
        let otp_factor = app.factors.iter().position(|f| {
            f.methods_for(&user, realm_str)
                .iter()
                .any(|m| m.uses_otp() || m.channel().is_some() || m.is_link())
        });
        let (Some(k), true) = (otp_factor, user.is_active(now)) else {
            self.record_trigger(&l, "ok", "no challenge: no OTP factor or inactive user")
                .await?;
            return Ok(Triggered::Challenges(None));
        };
        let req = AuthRequest {
            serial: serial.cloned(),
            ..AuthRequest::default()
        };
        let tokens = self.tokens_for(app, &user, &req, None).await?;
        let methods = app.factors[k].methods_for(&user, realm_str);
        let mut prompts = prompts_for(&methods, &tokens);
        let mut pending = self.pending_code(&l, &user, &methods, fallback, k >= 1)?;
        if pending.is_some() && !self.may_send_code(&l, &realm.name, &user).await? {
            pending = None;
        }
        if pending.is_none() {
            pending = self.pending_link(&l, &user, &methods).await?;
        }
        if let Some(p) = &pending {
            prompts.push(p.prompt.clone());
        }
        if prompts.is_empty() {
            self.record_trigger(&l, "ok", "no usable token to challenge")
                .await?;
            return Ok(Triggered::Challenges(None));
        }
        let serials: Vec<Serial> = prompts.iter().filter_map(|p| p.serial.clone()).collect();
        let k = u32::try_from(k).unwrap_or(0);
        let id = self
            .create_transaction(&l, app, &user, k, serials, pending)
            .await?;
        l.transaction = Some(id.clone());
        self.record_trigger(
            &l,
            "challenge",
            &format!("{} challenge(s) sent", prompts.len()),
        )
        .await?;
        let message = join_messages(&prompts);
        Ok(Triggered::Challenges(Some(Box::new(Challenged {
            transaction_id: id,
            prompts,
            message,
            user,
            realm: realm.name.clone(),
        }))))
    }

    async fn record_trigger(
        &self,
        l: &Login<'_>,
        result: &str,
        reason: &str,
    ) -> Result<(), EngineError> {
        self.record_action(l, "trigger_challenge", result, reason)
            .await
    }

    /// `/validate/polltransaction`: whether a challenge was answered out of band. Unknown and
    /// expired transactions are `Pending`, as in privacyIDEA.
    pub async fn poll_transaction(&self, id: &TransactionId) -> Result<PollStatus, EngineError> {
        let now = self.ports.clock.now();
        Ok(match self.ports.store.transaction(id).await? {
            Some(tx) if tx.expires_at > now => match tx.status {
                TxStatus::Answered => PollStatus::Accept,
                TxStatus::Declined => PollStatus::Declined,
                TxStatus::Pending | TxStatus::Completed => PollStatus::Pending,
            },
            _ => PollStatus::Pending,
        })
    }
}

impl Engine {
    /// After a PIN was found right: a hash made elsewhere (migrated from privacyIDEA, PBKDF2 or
    /// Argon2 with other parameters) or before the cost changed is replaced by one with the
    /// current parameters. Done beside the request, not in it: the answer must not take longer
    /// when the PIN was right (whatever the code), nor depend on it. A failure is logged.
    async fn upgrade_pin_hash(&self, token: &Token, pin: &str, old: &str) {
        if self.ports.hasher.is_current(old) {
            return;
        }
        let hasher = self.ports.hasher.clone();
        let store = self.ports.store.clone();
        let serial = token.serial.clone();
        let pin = zeroize::Zeroizing::new(pin.to_string());
        let old = old.to_string();
        tokio::spawn(async move {
            let new = match hasher.hash(&pin).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(%serial, error = %e, "the token PIN could not be re-hashed now; it is tried again at the next sign-in");
                    return;
                }
            };
            match store.replace_pin_hash(&serial, &old, &new).await {
                Ok(true) => {
                    tracing::info!(%serial, "token PIN re-hashed with the current parameters");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%serial, error = %e, "the re-hashed token PIN could not be stored");
                }
            }
        });
    }

    /// Where a login through `l`'s request starts: its door, the client it authenticated (a
    /// RADIUS client, an API client — at the validate API an agent's token) and the application
    /// the door chose.
    fn origin_of(&self, l: &Login<'_>) -> TxOrigin {
        let application = self
            .application(l.snap, l.ctx)
            .map(|a| a.name.0.clone())
            .unwrap_or_default();
        TxOrigin {
            door: l.ctx.door.as_str().into(),
            client: match l.ctx.door {
                super::Door::Radius | super::Door::Api | super::Door::Validate => {
                    l.ctx.client.clone()
                }
                super::Door::Web => None,
            },
            application,
        }
    }

    /// The refusal of a leg of `tx` that does not come the way its login started. At the
    /// validate API a login started without a client (privacyIDEA's clients, a challenge
    /// triggered by a service account) may be finished by one.
    fn elsewhere(&self, l: &Login<'_>, tx: &Transaction) -> Option<Outcome> {
        let started = tx.origin.as_ref()?;
        let here = self.origin_of(l);
        let same_client = started.client == here.client
            || (started.client.is_none() && here.door == super::Door::Validate.as_str());
        if started.door == here.door && started.application == here.application && same_client {
            return None;
        }
        l.set_note(format!(
            "the login started at {}{} for application {}",
            started.door,
            started
                .client
                .as_deref()
                .map(|c| format!(" (client {c})"))
                .unwrap_or_default(),
            started.application
        ));
        Some(reject(RejectReason::BadTransaction, None))
    }

    /// A rejection because a user source could not be asked (the error says which and why);
    /// any other error stays an error.
    fn unavailable(
        &self,
        l: &Login<'_>,
        e: EngineError,
        user: Option<User>,
    ) -> Result<Outcome, EngineError> {
        let detail = super::unavailable_detail(&e).ok_or(e)?;
        l.set_note(detail);
        Ok(reject(RejectReason::SourceUnavailable, user))
    }
}

/// The login or realm name of a request, escaped for the audit record, if one is no name
/// (control characters, too long).
fn bad_names(req: &AuthRequest) -> Option<String> {
    [req.user.as_deref(), req.realm.as_deref()]
        .into_iter()
        .flatten()
        .find(|name| !crate::ids::login_name_ok(name))
        .map(|name| crate::ids::escape_controls(&name.chars().take(64).collect::<String>()))
}

fn reject(reason: RejectReason, user: Option<User>) -> Outcome {
    Outcome::Reject(Box::new(Rejected { reason, user }))
}

/// The budget an answer to `factor` counts against: codes (OTPs, sent codes, links) or
/// passwords.
fn factor_fail_kind(factor: &Factor) -> FailKind {
    let code = |m: Method| {
        matches!(
            m,
            Method::SoftOtp
                | Method::SmsOtp
                | Method::MailOtp
                | Method::EmailLink
                | Method::ApprovedOtp
        )
    };
    match factor.all_methods().all(code) {
        true => FailKind::Otp,
        false => FailKind::Password,
    }
}

/// The ways the user can answer a factor proven by `methods`.
fn prompts_for(methods: &[Method], tokens: &[Token]) -> Vec<Prompt> {
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
fn join_messages(prompts: &[Prompt]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for p in prompts {
        if !seen.contains(&p.message.as_str()) {
            seen.push(&p.message);
        }
    }
    seen.join(", ")
}
