//! Codes sent by SMS or mail (methods `sms_otp`, `mail_otp`): made when the factor is reached,
//! queued in the store's outbox together with the transaction, checked once against its hash.

use super::flow::Login;
use super::{ClientMode, Engine, EngineError, Prompt};
use crate::model::delivery::render;
use crate::model::{Channel, Method, OutboxMessage, OutboxStatus, SentCode, Transaction, User};
use crate::rng::{random_digits, random_hex};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A code about to be sent: the message (its transaction id is filled in when the transaction
/// gets its id) and the prompt that asks for it.
pub(crate) struct PendingCode {
    pub code: Zeroizing<String>,
    pub message: OutboxMessage,
    pub prompt: Prompt,
}

impl Engine {
    /// The first of `methods` that sends a code the user can receive (a phone or mail address,
    /// and delivery profiles for the channel): a fresh code and its message.
    pub(crate) fn pending_code(
        &self,
        l: &Login<'_>,
        user: &User,
        methods: &[Method],
    ) -> Option<PendingCode> {
        let settings = &l.snap.settings;
        let (channel, recipient) = methods.iter().find_map(|m| {
            let channel = m.channel()?;
            let recipient = match channel {
                Channel::Sms => user.phone.clone(),
                Channel::Mail => user.email.clone(),
            }
            .filter(|r| !r.trim().is_empty())?;
            (!settings.delivery_of(channel).is_empty()).then_some((channel, recipient))
        })?;
        let code = Zeroizing::new(random_digits(
            self.ports.rng.as_ref(),
            settings.sent_code_length as usize,
        ));
        let validity = i64::from(settings.sent_code_validity_seconds);
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
        let (template, subject, prompt) = match channel {
            Channel::Sms => (
                &settings.sms_template,
                None,
                "Please enter the code sent to your phone",
            ),
            Channel::Mail => (
                &settings.mail_template,
                Some(render(&settings.mail_subject, &vars)),
                "Please enter the code sent to your mail address",
            ),
        };
        let message = OutboxMessage {
            id: random_hex(self.ports.rng.as_ref(), 16),
            channel,
            profiles: settings.delivery_of(channel),
            recipient,
            subject,
            body: Zeroizing::new(render(template, &vars)),
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
        Some(PendingCode {
            code,
            message,
            prompt: Prompt {
                serial: None,
                kind: match channel {
                    Channel::Sms => "sms".into(),
                    Channel::Mail => "email".into(),
                },
                client_mode: ClientMode::Interactive,
                message: prompt.into(),
            },
        })
    }

    /// Checks the answer to the code of `tx`. `None`: the transaction has no code to answer.
    pub(crate) async fn check_code(
        &self,
        l: &Login<'_>,
        tx: Option<&Transaction>,
        answer: &str,
    ) -> Result<Option<bool>, EngineError> {
        let Some((tx, code)) = tx.and_then(|t| t.code.as_ref().map(|c| (t, c))) else {
            return Ok(None);
        };
        let max = l.snap.settings.sent_code_max_fails;
        if code.expires_at <= l.now || code.fails >= max {
            return Ok(Some(false));
        }
        let given = SentCode::hash_of(&tx.id, answer.trim());
        let ok = !answer.trim().is_empty()
            && subtle::ConstantTimeEq::ct_eq(given.as_bytes(), code.hash.as_bytes()).into();
        if !ok {
            self.ports.store.record_code_failure(&tx.id).await?;
        }
        Ok(Some(ok))
    }
}
