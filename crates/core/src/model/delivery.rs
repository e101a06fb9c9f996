//! How codes and links reach people: delivery profiles (an SMTP server, an HTTP gateway for SMS
//! and other messengers), message templates, and the outbox of messages waiting to be sent.

use crate::ids::TransactionId;
use crate::model::SharedSecret;
use crate::model::app::check_name;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// No TLS (a relay on the same host or network only).
    None,
}

/// An SMTP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpProfile {
    pub host: String,
    /// Default: 465 for implicit TLS, 587 for STARTTLS, 25 without TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Sealed at rest; never shown unless secrets are asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SharedSecret>,
    /// The sender address.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
    /// Trust only these CA certificates (PEM) for the server's certificate (an internal relay
    /// with a private CA); default: the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(
        default = "default_timeout",
        skip_serializing_if = "is_default_timeout"
    )]
    pub timeout_seconds: u32,
}

impl SmtpProfile {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::Implicit => 465,
            SmtpTls::Starttls => 587,
            SmtpTls::None => 25,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
}

/// How values are escaped where a template puts them into the request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `application/x-www-form-urlencoded`: values percent-encoded.
    #[default]
    Form,
    /// `application/json`: values escaped as JSON string contents.
    Json,
    /// As they are.
    Raw,
}

/// An HTTP API that sends messages: an SMS provider, a WhatsApp or Zalo gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGateway {
    #[serde(default)]
    pub method: HttpMethod,
    /// `https://api.example.com/sms?to={phone}&text={message}`: values are percent-encoded.
    pub url: String,
    /// Header templates (`Authorization = "Bearer {secret}"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body template (`to={phone}&text={message}`, `{"to":"{phone}","text":"{message}"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default)]
    pub body_encoding: BodyEncoding,
    /// The API key or token, usable as `{secret}` in the URL, headers and body. Sealed at rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SharedSecret>,
    /// Statuses that mean "accepted"; empty: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub success_status: Vec<u16>,
    /// Text the answer must contain to mean "accepted" (some providers answer 200 to errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_contains: Option<String>,
    #[serde(
        default = "default_timeout",
        skip_serializing_if = "is_default_timeout"
    )]
    pub timeout_seconds: u32,
    /// Immediate retries of a failed request before the next profile is tried.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn default_timeout() -> u32 {
    10
}

fn is_default_timeout(v: &u32) -> bool {
    *v == default_timeout()
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryKind {
    Smtp(SmtpProfile),
    Http(HttpGateway),
}

/// A named way to send messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(flatten)]
    pub kind: DeliveryKind,
}

impl DeliveryProfile {
    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Err(e) = check_name(&self.name) {
            errs.push(format!("name: {e}"));
        }
        match &self.kind {
            DeliveryKind::Smtp(s) => {
                if s.host.trim().is_empty() || s.host.contains(['/', ' ']) {
                    errs.push("host: a host name or address".into());
                }
                if !looks_like_address(&s.from) {
                    errs.push(format!("from: '{}' is not a mail address", s.from));
                }
                if s.password.is_some() && s.username.is_none() {
                    errs.push("password: given without username".into());
                }
                if s.password.is_some() && s.tls == SmtpTls::None {
                    errs.push(
                        "password: would cross the network in clear; use tls = \"starttls\" or \"implicit\""
                            .into(),
                    );
                }
                if let Some(pem) = &s.ca_pem {
                    if s.tls == SmtpTls::None {
                        errs.push("ca_pem: only with tls = \"starttls\" or \"implicit\"".into());
                    }
                    if !pem.contains("-----BEGIN CERTIFICATE-----") {
                        errs.push("ca_pem: no PEM certificate found".into());
                    }
                }
                if !(1..=300).contains(&s.timeout_seconds) {
                    errs.push("timeout_seconds: from 1 to 300".into());
                }
            }
            DeliveryKind::Http(h) => {
                let lower = h.url.to_ascii_lowercase();
                if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                    errs.push(format!("url: '{}' is not an http(s) URL", h.url));
                }
                for k in h.headers.keys() {
                    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                        errs.push(format!("headers: '{k}' is not a header name"));
                    }
                }
                if h.method == HttpMethod::Get && h.body.is_some() {
                    errs.push("body: a GET request has no body; put the values in the URL".into());
                }
                if h.success_status.iter().any(|s| !(100..=599).contains(s)) {
                    errs.push("success_status: HTTP statuses are 100 to 599".into());
                }
                if !(1..=300).contains(&h.timeout_seconds) {
                    errs.push("timeout_seconds: from 1 to 300".into());
                }
                if h.retries > 5 {
                    errs.push("retries: at most 5".into());
                }
                let mentions_message = h.url.contains("{message}")
                    || h.body.as_deref().is_some_and(|b| b.contains("{message}"));
                if !mentions_message {
                    errs.push("url or body: must contain {message} (the text sent)".into());
                }
            }
        }
        errs
    }

    pub fn is_smtp(&self) -> bool {
        matches!(self.kind, DeliveryKind::Smtp(_))
    }

    /// The secret of the profile (SMTP password, gateway API key).
    pub fn secret(&self) -> Option<&SharedSecret> {
        match &self.kind {
            DeliveryKind::Smtp(s) => s.password.as_ref(),
            DeliveryKind::Http(h) => h.secret.as_ref(),
        }
    }

    /// Where the profile sends, with whose name: its secret is only kept for the same.
    pub fn destination(&self) -> String {
        match &self.kind {
            DeliveryKind::Smtp(s) => format!(
                "smtp:{}:{}:{}:{:?}",
                s.host.to_lowercase(),
                s.port(),
                s.username.as_deref().unwrap_or(""),
                s.tls
            ),
            DeliveryKind::Http(h) => format!("http:{}", h.url),
        }
    }

    pub fn set_secret(&mut self, secret: Option<SharedSecret>) {
        match &mut self.kind {
            DeliveryKind::Smtp(s) => s.password = secret,
            DeliveryKind::Http(h) => h.secret = secret,
        }
    }
}

fn looks_like_address(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !s.contains([' ', '<', '>', '\n'])
        }
        None => false,
    }
}

/// The sealing context of a profile's secret.
fn secret_context(name: &str) -> String {
    format!("delivery_profile:{}", name.to_lowercase())
}

/// The stored form of a profile: its secret sealed (`secret_sealed`).
pub fn delivery_to_stored(
    store: &dyn crate::store::Store,
    p: &DeliveryProfile,
) -> Result<serde_json::Value, String> {
    let mut plain = p.clone();
    plain.set_secret(None);
    let mut body = serde_json::to_value(&plain).map_err(|e| e.to_string())?;
    if let (Some(secret), Some(obj)) = (p.secret(), body.as_object_mut()) {
        let sealed = store.seal_secret(secret.expose().as_bytes(), &secret_context(&p.name));
        obj.insert(
            "secret_sealed".into(),
            serde_json::Value::String(data_encoding::BASE64.encode(&sealed)),
        );
    }
    Ok(body)
}

/// Reads a stored profile and opens its secret.
pub fn delivery_from_stored(
    store: &dyn crate::store::Store,
    mut body: serde_json::Value,
) -> Result<DeliveryProfile, String> {
    let sealed = body
        .as_object_mut()
        .and_then(|o| o.remove("secret_sealed"))
        .and_then(|v| v.as_str().map(str::to_string));
    let mut p: DeliveryProfile = serde_json::from_value(body).map_err(|e| e.to_string())?;
    if let Some(sealed) = sealed {
        let raw = data_encoding::BASE64
            .decode(sealed.as_bytes())
            .map_err(|e| format!("sealed secret: {e}"))?;
        let plain = store
            .open_secret(&raw, &secret_context(&p.name))
            .map_err(|e| e.to_string())?;
        let text =
            String::from_utf8(plain.to_vec()).map_err(|_| "secret is not UTF-8".to_string())?;
        p.set_secret(Some(SharedSecret::new(text)));
    }
    Ok(p)
}

/// Fills a message template: `{otp}` (also `<%TOKEN%>`), `{validity_minutes}`, `{username}`,
/// `{realm}`, `{given_name}`, `{surname}`, `{link}`, ... — whatever `vars` holds; `{{NAME}}`
/// works like `{NAME}`. Unknown placeholders stay as they are.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> String {
    // One pass over the template: what a value brings in (a `{secret}` in a user's name, say)
    // is never read as a placeholder.
    let template = template.replace("<%TOKEN%>", "{otp}");
    let mut out = String::with_capacity(template.len());
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let (inner, len) = if let Some(body) = after.strip_prefix("{{") {
            match body.find("}}") {
                Some(end) => (&body[..end], end + 4),
                None => ("", 0),
            }
        } else {
            match after[1..].find('}') {
                Some(end) => (&after[1..1 + end], end + 2),
                None => ("", 0),
            }
        };
        match vars.get(inner).filter(|_| len > 0) {
            Some(value) => {
                out.push_str(value);
                rest = &after[len..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Fills an HTML template: like [`render`], with the values HTML-escaped.
pub fn render_html(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let escaped: BTreeMap<&str, String> = vars
        .iter()
        .map(|(k, v)| {
            (
                *k,
                v.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#39;"),
            )
        })
        .collect();
    render(template, &escaped)
}

/// How a message reaches a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Sms,
    Whatsapp,
    Zalo,
    Mail,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Sms,
        Channel::Whatsapp,
        Channel::Zalo,
        Channel::Mail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Whatsapp => "whatsapp",
            Channel::Zalo => "zalo",
            Channel::Mail => "mail",
        }
    }

    /// `SMS`, `whatsapp`, `Zalo`, `mail` or `email` (seed 003 writes them in capitals).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sms" => Some(Channel::Sms),
            "whatsapp" => Some(Channel::Whatsapp),
            "zalo" => Some(Channel::Zalo),
            "mail" | "email" => Some(Channel::Mail),
            _ => None,
        }
    }

    /// Sent to a phone number (else to a mail address).
    pub fn is_mobile(self) -> bool {
        self != Channel::Mail
    }
}

/// One way to deliver a message: a channel, its profiles (tried in order), the text for it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub channel: Channel,
    pub profiles: Vec<String>,
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: Zeroizing<String>,
    /// Mail: an HTML alternative to the text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("channel", &self.channel)
            .field("profiles", &self.profiles)
            .field("recipient", &self.recipient)
            .field("body", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// An attempt is under way on some node (until `lease_until`).
    Sending,
    Sent,
    /// Given up: every attempt failed, or it expired before it could be sent.
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(OutboxStatus::Pending),
            "sending" => Some(OutboxStatus::Sending),
            "sent" => Some(OutboxStatus::Sent),
            "failed" => Some(OutboxStatus::Failed),
            _ => None,
        }
    }
}

/// A message accepted for delivery: its legs are tried in order (the primary channel, then
/// the fallback channels). The legs (which hold the code or link) are sealed at rest.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// 32 hex digits.
    pub id: String,
    pub legs: Vec<Leg>,
    pub transaction_id: Option<TransactionId>,
    /// For `tessera outbox` and the audit log.
    pub username: Option<String>,
    pub status: OutboxStatus,
    /// Attempts started so far; an attempt is identified by (id, attempts).
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// No use sending after this (the code expired).
    pub not_after: i64,
    pub last_error: Option<String>,
    /// The profile that sent it.
    pub sent_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("id", &self.id)
            .field("legs", &self.legs)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl OutboxMessage {
    /// The first leg's channel and recipient, for listings.
    pub fn channel(&self) -> Option<Channel> {
        self.legs.first().map(|l| l.channel)
    }

    pub fn recipient(&self) -> &str {
        self.legs.first().map_or("", |l| l.recipient.as_str())
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    Sent {
        by: String,
    },
    /// Try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_every_placeholder_form() {
        let mut vars = BTreeMap::new();
        vars.insert("otp", "123456".to_string());
        vars.insert("username", "alice".to_string());
        assert_eq!(
            render(
                "<%TOKEN%> / {otp} / {{otp}} for {username} {unknown}",
                &vars
            ),
            "123456 / 123456 / 123456 for alice {unknown}"
        );
    }

    #[test]
    fn values_are_never_read_as_placeholders() {
        let mut vars = BTreeMap::new();
        vars.insert("message", "hi {secret}".to_string());
        vars.insert("secret", "api-key".to_string());
        assert_eq!(
            render("{message} / {secret}", &vars),
            "hi {secret} / api-key"
        );
        assert_eq!(render("{ {nope} {message", &vars), "{ {nope} {message");
    }

    #[test]
    fn html_templates_escape_values() {
        let mut vars = BTreeMap::new();
        vars.insert("username", "<b>x</b> & 'y'".to_string());
        assert_eq!(
            render_html("<p>{username}</p>", &vars),
            "<p>&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39;</p>"
        );
    }

    #[test]
    fn profiles_are_checked() {
        let p: DeliveryProfile = serde_json::from_value(serde_json::json!({
            "name": "gw", "type": "http", "method": "GET",
            "url": "ftp://x", "body": "x", "retries": 9, "headers": {"Bad Header": "v"}
        }))
        .unwrap();
        let errs = p.problems();
        for want in ["url:", "headers:", "body:", "retries:", "{message}"] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
        let p: DeliveryProfile = serde_json::from_value(serde_json::json!({
            "name": "mail", "type": "smtp", "host": "smtp.example.org", "from": "mfa@example.org"
        }))
        .unwrap();
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        let DeliveryKind::Smtp(s) = &p.kind else {
            panic!()
        };
        assert_eq!(s.port(), 587);
    }
}
