//! Challenges started without a password (`/validate/triggerchallenge`) and polling a
//! transaction.

use super::challenge::{join_messages, prompts_for};
use super::*;
use crate::engine::{
    AuthRequest, Challenged, Engine, EngineError, PollStatus, RejectReason, RequestCtx,
};
use crate::ids::{Serial, TransactionId};
use crate::model::TxStatus;

impl Engine {
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
                let detail = crate::engine::unavailable_detail(&e).ok_or(e)?;
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

    pub(super) async fn record_trigger(
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
