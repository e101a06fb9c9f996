//! Codes sent by SMS, WhatsApp, Zalo or mail (methods `sms_otp`, `mail_otp`): made when the
//! factor is reached, queued in the store's outbox together with the transaction, checked once
//! against their hash. Which channels carry a code follows seed 003: a primary channel for
//! phones (SMS, or the WhatsApp/Zalo sub-channel), then the fallback channels; a request may
//! name one fallback channel (`fallbackChannel`) to use instead.

use super::flow::Login;
use super::{ClientMode, Engine, EngineError, Prompt};
use crate::ids::TransactionId;
use crate::model::delivery::{Leg, render, render_html};
use crate::model::{
    Channel, CodeKind, Method, OutboxMessage, OutboxStatus, SentCode, Transaction, User,
};
use crate::rng::{random_digits, random_hex};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A code about to be sent: the message (its transaction id is filled in when the transaction
/// gets its id) and the prompt that asks for it.
pub(crate) struct PendingCode {
    pub code: Zeroizing<String>,
    pub kind: CodeKind,
    pub message: OutboxMessage,
    pub prompt: Prompt,
}

impl PendingCode {
    /// What the transaction keeps of it, for factor `factor`.
    pub(crate) fn sent_code(&self, tx: &TransactionId, factor: u32) -> SentCode {
        SentCode {
            hash: SentCode::hash_of(tx, self.kind, &self.code),
            kind: self.kind,
            factor,
            fails: 0,
            expires_at: self.message.not_after,
        }
    }

    /// The message, with the transaction id in place (links carry it).
    pub(crate) fn message_for(&self, tx: &TransactionId) -> OutboxMessage {
        let fill = |s: &str| Zeroizing::new(s.replace(super::links::TX_MARK, tx.as_str()));
        OutboxMessage {
            transaction_id: Some(tx.clone()),
            legs: self
                .message
                .legs
                .iter()
                .map(|leg| Leg {
                    body: fill(&leg.body),
                    html: leg.html.as_ref().map(|h| fill(h)),
                    ..leg.clone()
                })
                .collect(),
            ..self.message.clone()
        }
    }
}

/// Seed 003's errors of a requested channel, with their documented codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("Fallback Channel needs identifier mobile")]
    NeedsMobile,
    #[error("Fallback Channel needs identifier email")]
    NeedsEmail,
    #[error("Channel is not configured properly, please check and try again")]
    NotConfigured,
}

impl ChannelError {
    pub fn code(&self) -> i64 {
        match self {
            ChannelError::NeedsMobile => 1601,
            ChannelError::NeedsEmail => 1602,
            ChannelError::NotConfigured => 1603,
        }
    }
}

impl Engine {
    /// The code for the first of `methods` that sends one, with the legs the user can receive
    /// (a phone or mail address, and delivery profiles for the channel). `fallback`: the
    /// channel the request asked for instead of the primary one.
    pub(crate) fn pending_code(
        &self,
        l: &Login<'_>,
        user: &User,
        methods: &[Method],
        fallback: Option<&str>,
        mfa: bool,
    ) -> Result<Option<PendingCode>, EngineError> {
        let settings = &l.snap.settings;
        let Some(method) = methods.iter().find(|m| m.channel().is_some()) else {
            return Ok(None);
        };
        let phone = user.phone.clone().filter(|p| !p.trim().is_empty());
        let mail = user.email.clone().filter(|m| !m.trim().is_empty());
        let recipient = |c: Channel| {
            if c.is_mobile() {
                phone.clone()
            } else {
                mail.clone()
            }
        };
        let usable = |c: Channel| !settings.delivery_of(c).is_empty();
        let plan: Vec<(Channel, String)> = match fallback.filter(|f| !f.trim().is_empty()) {
            Some(asked) => {
                let channel = Channel::parse(asked)
                    .filter(|c| settings.fallbacks().contains(c) && usable(*c))
                    .ok_or(EngineError::Channel(ChannelError::NotConfigured))?;
                let to =
                    recipient(channel).ok_or(EngineError::Channel(if channel.is_mobile() {
                        ChannelError::NeedsMobile
                    } else {
                        ChannelError::NeedsEmail
                    }))?;
                vec![(channel, to)]
            }
            None => {
                let primary = match method {
                    Method::MailOtp => Some(Channel::Mail),
                    _ => settings.primary_mobile_for(mfa),
                };
                primary
                    .into_iter()
                    .chain(settings.fallbacks())
                    .filter(|c| usable(*c))
                    .filter_map(|c| recipient(c).map(|to| (c, to)))
                    .fold(Vec::new(), |mut acc, (c, to)| {
                        if !acc.iter().any(|(x, _)| *x == c) {
                            acc.push((c, to));
                        }
                        acc
                    })
            }
        };
        let Some((first, _)) = plan.first().cloned() else {
            return Ok(None);
        };
        let code = Zeroizing::new(random_digits(
            self.ports.rng.as_ref(),
            settings.sent_code_length as usize,
        ));
        // A code of the MFA step through the API lives as seed 003's MFA token session; others
        // as the sent-code setting says.
        let validity = if mfa && l.ctx.door == super::Door::Api {
            i64::from(settings.mfa_token_session_minutes) * 60
        } else {
            i64::from(settings.sent_code_validity_seconds)
        };
        let mut vars: BTreeMap<&str, String> = BTreeMap::new();
        vars.insert("otp", code.to_string());
        vars.insert("validity_minutes", ((validity + 59) / 60).to_string());
        vars.insert("username", user.username.clone());
        vars.insert(
            "realm",
            l.realm.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
        );
        vars.insert("given_name", user.given_name.clone().unwrap_or_default());
        vars.insert("surname", user.surname.clone().unwrap_or_default());
        add_user_attributes(&mut vars, user);
        let legs = plan
            .into_iter()
            .map(|(channel, recipient)| Leg {
                channel,
                profiles: settings.delivery_of(channel),
                recipient,
                subject: (channel == Channel::Mail).then(|| render(&settings.mail_subject, &vars)),
                body: Zeroizing::new(render(settings.template_for(channel, mfa), &vars)),
                html: (channel == Channel::Mail && !settings.mail_html_template.is_empty())
                    .then(|| Zeroizing::new(render_html(&settings.mail_html_template, &vars))),
            })
            .collect();
        let message = OutboxMessage {
            id: random_hex(self.ports.rng.as_ref(), 16),
            legs,
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
            code,
            kind: CodeKind::Code,
            message,
            prompt: code_prompt(first),
        }))
    }

    /// Counts a code about to be sent to `user` against `sent_code_max_per_hour`; false when
    /// the hour's budget is used up (nothing is sent then). Kept in the store's lockout
    /// counters under a key of its own, so that every node counts together.
    pub(crate) async fn may_send_code(
        &self,
        l: &Login<'_>,
        realm: &crate::ids::RealmName,
        user: &User,
    ) -> Result<bool, EngineError> {
        let max = l.snap.settings.sent_code_max_per_hour;
        if max == 0 {
            return Ok(true);
        }
        let key = crate::lockout::LockKey::sent_codes(realm.as_str(), &user.username);
        let policy = crate::store::LockPolicy {
            max_password: u32::MAX,
            max_otp: max,
            lock_secs: 3600,
            interval_secs: 3600,
        };
        // Taken before the code is sent: codes asked for at once cannot pass the budget.
        Ok(self
            .ports
            .store
            .reserve_attempt(&key, crate::store::FailKind::Otp, l.now, &policy)
            .await?
            .is_some())
    }

    /// Checks the answer to the code sent for the pending factor of `tx`, spending one of its
    /// answers (and the code, when right). `None`: no code was sent for this factor.
    pub(crate) async fn check_code(
        &self,
        l: &Login<'_>,
        tx: Option<&Transaction>,
        answer: &str,
    ) -> Result<Option<bool>, EngineError> {
        let Some(tx) = tx.filter(|t| {
            t.code
                .as_ref()
                .is_some_and(|c| c.kind == CodeKind::Code && c.factor == t.next_factor)
        }) else {
            return Ok(None);
        };
        let store = &self.ports.store;
        let max = l.snap.settings.sent_code_max_fails;
        let Some(hash) = store
            .reserve_code_attempt(&tx.id, tx.next_factor, max, l.now)
            .await?
        else {
            return Ok(Some(false));
        };
        let given = SentCode::hash_of(&tx.id, CodeKind::Code, answer.trim());
        let right = !answer.trim().is_empty()
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                hash.as_bytes(),
            ));
        Ok(Some(right && store.consume_code(&tx.id, &hash).await?))
    }
}

/// The prompt of a code sent by `channel`.
pub fn code_prompt(channel: Channel) -> Prompt {
    let (kind, prompt) = match channel {
        Channel::Sms => ("sms", "Please enter the code sent to your phone"),
        Channel::Whatsapp => ("sms", "Please enter the code sent to you by WhatsApp"),
        Channel::Zalo => ("sms", "Please enter the code sent to you by Zalo"),
        Channel::Mail => ("email", "Please enter the code sent to your mail address"),
    };
    Prompt {
        serial: None,
        kind: kind.into(),
        client_mode: ClientMode::Interactive,
        message: prompt.into(),
    }
}

/// The channel a code for `method` goes by for a user with a phone and a mail address, given
/// the request's `fallback` (what an answer for such a user says, without asking for one).
pub fn expected_channel(
    settings: &crate::settings::SystemSettings,
    method: Method,
    fallback: Option<&str>,
    mfa: bool,
) -> Option<Channel> {
    let usable = |c: &Channel| !settings.delivery_of(*c).is_empty();
    if let Some(asked) = fallback.filter(|f| !f.trim().is_empty()) {
        return Channel::parse(asked).filter(|c| settings.fallbacks().contains(c) && usable(c));
    }
    let primary = match method {
        Method::MailOtp => Some(Channel::Mail),
        _ => settings.primary_mobile_for(mfa),
    };
    primary
        .into_iter()
        .chain(settings.fallbacks())
        .find(|c| usable(c))
}

/// A directory user's further attributes (`department`, `title`, ...) for templates, by their
/// lower-case names; they never replace the placeholders above.
pub(crate) fn add_user_attributes<'a>(vars: &mut BTreeMap<&'a str, String>, user: &'a User) {
    for (k, v) in &user.attributes {
        if k != "dn" && k != "memberof" {
            vars.entry(k.as_str()).or_insert_with(|| v.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_attributes_fill_templates_without_replacing_placeholders() {
        let mut attributes = BTreeMap::new();
        attributes.insert("department".to_string(), vec!["Sales".to_string()]);
        attributes.insert("otp".to_string(), vec!["999999".to_string()]);
        attributes.insert("dn".to_string(), vec!["uid=a,dc=x".to_string()]);
        let user = User {
            source: crate::ids::SourceName::from("corp"),
            id: crate::ids::UserId::from("1"),
            username: "a".into(),
            given_name: None,
            surname: None,
            email: None,
            phone: None,
            manager: None,
            groups: vec![],
            enabled: true,
            expires_at: None,
            attributes,
        };
        let mut vars = BTreeMap::new();
        vars.insert("otp", "123456".to_string());
        add_user_attributes(&mut vars, &user);
        assert_eq!(
            render("{otp} for {department} {dn}", &vars),
            "123456 for Sales {dn}"
        );
    }
}
