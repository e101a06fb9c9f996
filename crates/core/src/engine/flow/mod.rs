//! The login state machine: first leg, following legs, triggered challenges and polling.

use super::{
    AuthRequest, Challenged, Engine, EngineError, Outcome, RejectReason, Rejected, RequestCtx,
    Snapshot,
};
use crate::ids::{AppName, RealmName, Serial, TransactionId};
use crate::model::{Application, AuditRecord, Factor, Token, Transaction, TxOrigin, User};
use crate::store::FailKind;

mod challenge;
mod legs;
mod pending;
mod prove;
mod trigger;

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
        let record = AuditRecord::event(
            self.ports.clock.now_millis(),
            l.ctx.door.as_str(),
            l.ctx.actor.clone(),
            action,
        )
        .user(l.login.clone(), l.realm.as_ref().map(|r| r.0.clone()))
        .serial(l.serial.as_ref().map(|s| s.0.clone()))
        .application(l.app.as_ref().map(|a| a.0.clone()))
        .transaction(l.transaction.as_ref().map(|t| t.as_str().to_string()))
        .client(
            l.ctx.client_ip.map(|ip| ip.to_string()),
            l.ctx.user_agent.clone(),
        )
        .ended(result, text);
        self.audit_decision(record).await
    }

    fn application<'s>(&self, snap: &'s Snapshot, ctx: &RequestCtx) -> Option<&'s Application> {
        let name = ctx
            .application
            .clone()
            .unwrap_or_else(|| AppName(snap.settings.validate_application.clone()));
        snap.application(&name)
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
    match factor.all_methods().all(|m| m.fail_kind() == FailKind::Otp) {
        true => FailKind::Otp,
        false => FailKind::Password,
    }
}
