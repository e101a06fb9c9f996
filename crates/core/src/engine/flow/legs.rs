//! The legs of a login: the first (the user resolved, the first factor checked) and the
//! following ones (a transaction answered), and what keeps unknown users indistinguishable.

use super::*;
use crate::engine::{Accepted, AuthRequest, Engine, EngineError, Outcome, RejectReason, Snapshot};
use crate::ids::{RealmName, Serial, TransactionId};
use crate::model::{Application, Method, Token, Transaction, TxStatus, User};
use crate::store::FailKind;

impl Engine {
    pub(super) async fn first_leg(
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
                    && matches!(
                        l.ctx.door,
                        crate::engine::Door::Validate | crate::engine::Door::Radius
                    )
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
            && l.ctx.door == crate::engine::Door::Validate
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

    pub(super) async fn next_leg(
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
    pub(super) async fn user_of(
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

    /// The user's OTP tokens the request may use, when the application needs them.
    pub(super) async fn tokens_for(
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

    pub(super) async fn owner_of(
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
    pub(super) async fn as_if_checked(
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
    pub(super) async fn waste_time(
        &self,
        source: Option<&dyn crate::source::UserSource>,
        app: &Application,
        pass: &str,
        otp_length: usize,
    ) -> Result<(), EngineError> {
        let first = app.factors.first();
        // `passthru` checks the password of a user without a token.
        let hashes = match first {
            Some(f) => f.all_methods().any(Method::checks_password),
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
}
