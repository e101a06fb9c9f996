//! Links by mail: `email_link` (the user's own click, or the manager's, finishes the factor)
//! and `approved_otp` (the manager approves the login, or is only told). The link carries the
//! transaction id and a random token of which the transaction keeps only the hash; a click
//! answers the transaction once, and the waiting client polls and then finalises it.

use super::flow::Login;
use super::sent::PendingCode;
use super::{ClientMode, Engine, EngineError, Prompt, RequestCtx};
use crate::ids::{RealmName, TransactionId};
use crate::model::delivery::{Leg, render, render_html};
use crate::model::{
    AuditRecord, Channel, CodeKind, Method, OutboxMessage, OutboxStatus, SentCode, TxStatus, User,
};
use crate::rng::random_hex;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// Stands for the transaction id in a link until the transaction has one.
pub(crate) const TX_MARK: &str = "@TX@";

/// What a link page shows before the click.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub username: String,
    pub application: String,
    pub realm: String,
    /// The manager decides (approve or reject); else the user confirms their own login.
    pub manager: bool,
    pub expires_at: i64,
}

/// How a click on a link ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAnswer {
    Approved,
    Rejected,
    /// Unknown, expired, already used or forged.
    Invalid,
}

impl Engine {
    /// Whether `method` makes the client wait for a click (rather than passing at once).
    pub(crate) fn waits_for_click(&self, l: &Login<'_>, method: Method) -> bool {
        match method {
            Method::EmailLink => true,
            Method::ApprovedOtp => l.snap.settings.approval_mode == "approval",
            _ => false,
        }
    }

    /// The mail address or phone number of the manager of `user` (or the default recipient).
    async fn manager_contact(
        &self,
        l: &Login<'_>,
        user: &User,
        channel: Channel,
    ) -> Result<Option<String>, EngineError> {
        let settings = &l.snap.settings;
        let realm = l.realm.clone().unwrap_or_else(|| RealmName(String::new()));
        if let Some(manager) = user.manager.as_deref().filter(|m| !m.is_empty())
            && let Some(m) = self.find_user(l.snap, &realm, manager).await?
        {
            let contact = match channel {
                Channel::Mail => m.email,
                _ => m.phone,
            };
            if let Some(c) = contact.filter(|c| !c.trim().is_empty()) {
                return Ok(Some(c));
            }
        }
        let default = settings.approval_default_recipient.trim();
        Ok((!default.is_empty()).then(|| default.to_string()))
    }

    /// A link message for the first link method of `methods` that can be sent: who gets it,
    /// the text, the prompt for the waiting client. The link's transaction id is filled in
    /// when the transaction has one ([`TX_MARK`]).
    pub(crate) async fn pending_link(
        &self,
        l: &Login<'_>,
        user: &User,
        methods: &[Method],
    ) -> Result<Option<PendingCode>, EngineError> {
        let settings = &l.snap.settings;
        let Some(method) = methods
            .iter()
            .copied()
            .find(|m| self.waits_for_click(l, *m))
        else {
            return Ok(None);
        };
        let Some(public_url) = self.public_url() else {
            tracing::warn!("links need the public_url setting; the link factor cannot be used");
            return Ok(None);
        };
        let manager_decides =
            method == Method::ApprovedOtp || settings.email_link_mode == "manager";
        let channel = if method == Method::ApprovedOtp && settings.approval_channel == "sms" {
            Channel::Sms
        } else {
            Channel::Mail
        };
        let recipient = if manager_decides {
            self.manager_contact(l, user, channel).await?
        } else {
            user.email.clone().filter(|m| !m.trim().is_empty())
        };
        let Some(recipient) = recipient else {
            return Ok(None);
        };
        if settings.delivery_of(channel).is_empty() {
            return Ok(None);
        }
        let token = Zeroizing::new(random_hex(self.ports.rng.as_ref(), 32));
        let validity = i64::from(settings.link_validity_seconds);
        let link = format!("{public_url}/link/{TX_MARK}/{}", token.as_str());
        let vars = self.message_vars(l, user, &link, validity);
        let (subject, template) = if method == Method::ApprovedOtp {
            (&settings.approval_subject, &settings.approval_template)
        } else {
            (&settings.email_link_subject, &settings.email_link_template)
        };
        let message = OutboxMessage {
            id: random_hex(self.ports.rng.as_ref(), 16),
            legs: vec![Leg {
                channel,
                profiles: settings.delivery_of(channel),
                recipient,
                subject: (channel == Channel::Mail).then(|| render(subject, &vars)),
                body: Zeroizing::new(render(template, &vars)),
                html: (channel == Channel::Mail
                    && method == Method::EmailLink
                    && !settings.email_link_html_template.is_empty())
                .then(|| Zeroizing::new(render_html(&settings.email_link_html_template, &vars))),
            }],
            transaction_id: None,
            username: Some(user.username.clone()),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: l.now,
            not_after: l.now + validity,
            last_error: None,
            sent_by: None,
            created_at: l.now,
            updated_at: l.now,
        };
        Ok(Some(PendingCode {
            code: token,
            kind: CodeKind::Link,
            message,
            prompt: Prompt {
                serial: None,
                kind: if manager_decides {
                    "approval"
                } else {
                    "email_link"
                }
                .into(),
                client_mode: ClientMode::Poll,
                message: if manager_decides {
                    "Waiting for your manager's approval".into()
                } else {
                    "Open the link sent to your mail address".into()
                },
            },
        }))
    }

    /// The placeholders of link and approval messages.
    fn message_vars<'u>(
        &self,
        l: &Login<'_>,
        user: &'u User,
        link: &str,
        validity: i64,
    ) -> BTreeMap<&'u str, String> {
        let mut vars = BTreeMap::new();
        vars.insert("link", link.to_string());
        vars.insert("username", user.username.clone());
        vars.insert(
            "realm",
            l.realm.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        );
        vars.insert(
            "application",
            l.app.as_ref().map(|a| a.0.clone()).unwrap_or_default(),
        );
        vars.insert(
            "client_ip",
            l.ctx
                .client_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "an unknown address".into()),
        );
        vars.insert("given_name", user.given_name.clone().unwrap_or_default());
        vars.insert("surname", user.surname.clone().unwrap_or_default());
        super::sent::add_user_attributes(&mut vars, user);
        vars.insert("validity_minutes", ((validity + 59) / 60).to_string());
        vars
    }

    /// Approved OTP in information mode: the manager is told; the factor passes. False when
    /// nobody can be told (no manager contact, no default recipient, no delivery profile): the
    /// factor cannot be used then.
    pub(crate) async fn inform_manager(
        &self,
        l: &Login<'_>,
        user: &User,
    ) -> Result<bool, EngineError> {
        let settings = &l.snap.settings;
        let channel = if settings.approval_channel == "sms" {
            Channel::Sms
        } else {
            Channel::Mail
        };
        let Some(recipient) = self.manager_contact(l, user, channel).await? else {
            tracing::warn!(user = %user.username, "no manager (or default recipient) to inform");
            return Ok(false);
        };
        if settings.delivery_of(channel).is_empty() {
            return Ok(false);
        }
        let vars = self.message_vars(l, user, "", 3600);
        let message = OutboxMessage {
            id: random_hex(self.ports.rng.as_ref(), 16),
            legs: vec![Leg {
                channel,
                profiles: settings.delivery_of(channel),
                recipient,
                subject: (channel == Channel::Mail)
                    .then(|| render(&settings.approval_subject, &vars)),
                body: Zeroizing::new(render(&settings.approval_template, &vars)),
                html: None,
            }],
            transaction_id: None,
            username: Some(user.username.clone()),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: l.now,
            not_after: l.now + 3600,
            last_error: None,
            sent_by: None,
            created_at: l.now,
            updated_at: l.now,
        };
        self.ports.store.queue_message(&message).await?;
        self.outbox_signal().notify_one();
        Ok(true)
    }

    /// The transaction a link is for, if the link is valid and still unanswered.
    pub async fn link_info(
        &self,
        tx: &TransactionId,
        token: &str,
    ) -> Result<Option<LinkInfo>, EngineError> {
        let now = self.ports.clock.now();
        let Some(t) = self.ports.store.transaction(tx).await? else {
            return Ok(None);
        };
        let Some(code) = &t.code else {
            return Ok(None);
        };
        let valid = t.status == TxStatus::Pending
            && code.kind == CodeKind::Link
            && code.factor == t.next_factor
            && code.expires_at > now
            && t.expires_at > now
            && subtle::ConstantTimeEq::ct_eq(
                SentCode::hash_of(tx, CodeKind::Link, token).as_bytes(),
                code.hash.as_bytes(),
            )
            .into();
        if !valid {
            return Ok(None);
        }
        let snap = self.snapshot();
        let manager = snap.application(&t.application).is_some_and(|app| {
            app.factors
                .get(t.next_factor as usize)
                .is_some_and(|f| f.all_methods().any(|m| m == Method::ApprovedOtp))
        }) || snap.settings.email_link_mode == "manager";
        Ok(Some(LinkInfo {
            username: t.username.clone(),
            application: t.application.0.clone(),
            realm: t.realm.0.clone(),
            manager,
            expires_at: code.expires_at,
        }))
    }

    /// A click on a link: approves (or rejects) its transaction, once.
    pub async fn answer_link(
        &self,
        tx: &TransactionId,
        token: &str,
        approve: bool,
        ctx: &RequestCtx,
    ) -> Result<LinkAnswer, EngineError> {
        let info = self.link_info(tx, token).await?;
        // Links to transactions that do not exist are not audited (nobody's, and anyone can
        // make up such requests).
        if info.is_none() && self.ports.store.transaction(tx).await?.is_none() {
            return Ok(LinkAnswer::Invalid);
        }
        let answer = match &info {
            None => LinkAnswer::Invalid,
            Some(_) => {
                let status = if approve {
                    TxStatus::Answered
                } else {
                    TxStatus::Declined
                };
                // One statement checks the token against the factor still pending and answers
                // it: a click cannot land on a later factor.
                let hash = SentCode::hash_of(tx, CodeKind::Link, token);
                let now = self.ports.clock.now();
                if self.ports.store.answer_link(tx, &hash, status, now).await? {
                    if approve {
                        LinkAnswer::Approved
                    } else {
                        LinkAnswer::Rejected
                    }
                } else {
                    LinkAnswer::Invalid
                }
            }
        };
        let (result, reason) = match answer {
            LinkAnswer::Approved => ("ok", "login approved by link"),
            LinkAnswer::Rejected => ("declined", "login rejected by link"),
            LinkAnswer::Invalid => ("error", "unknown, expired or used link"),
        };
        let record = AuditRecord::event(
            self.ports.clock.now_millis(),
            ctx.door.as_str(),
            ctx.actor.clone(),
            "link_answer",
        )
        .user(
            info.as_ref().map(|i| i.username.clone()),
            info.as_ref().map(|i| i.realm.clone()),
        )
        .application(info.as_ref().map(|i| i.application.clone()))
        .transaction(Some(tx.as_str().to_string()))
        .client(
            ctx.client_ip.map(|ip| ip.to_string()),
            ctx.user_agent.clone(),
        )
        .ended(result, reason);
        self.audit_decision(record).await?;
        Ok(answer)
    }
}
