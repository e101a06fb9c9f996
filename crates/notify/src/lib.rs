//! Delivery of codes and links: SMTP servers (lettre) and HTTP gateways for SMS, WhatsApp,
//! Zalo or any provider with an HTTP API (reqwest), and the outbox worker that sends what the
//! engine queued — claimed per attempt across nodes, retried with backoff, failing over from
//! profile to profile, and audited attempt by attempt (never with the message text).
//!
//! May depend on: `tessera-core`.

pub mod syslog;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tessera_core::engine::Engine;
use tessera_core::model::delivery::{
    BodyEncoding, HttpGateway, HttpMethod, Leg, SmtpProfile, SmtpTls, render,
};
use tessera_core::model::{
    AttemptResult, AuditRecord, Channel, DeliveryKind, DeliveryProfile, OutboxMessage,
};
use tessera_core::store::OutboxStore;

/// Attempts of a message at most (each tries every profile of its channel in order).
const MAX_ATTEMPTS: u32 = 5;
/// Messages taken per round.
const BATCH: u32 = 16;

/// Characters percent-encoded in URLs: all but RFC 3986's unreserved ones.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Sends messages through delivery profiles.
#[derive(Debug, Clone)]
pub struct Deliverer {
    http: reqwest::Client,
}

impl Deliverer {
    /// An HTTP client with rustls (ring) and the system's trusted roots, set here rather than
    /// through a process-wide default provider.
    pub fn new() -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Deliverer { http })
    }

    /// Sends `msg` through one profile. The error says what went wrong, without the text.
    pub async fn send(&self, profile: &DeliveryProfile, leg: &Leg) -> Result<String, String> {
        match &profile.kind {
            DeliveryKind::Smtp(s) => send_mail(s, leg).await,
            DeliveryKind::Http(h) => {
                let mut last = String::new();
                for _ in 0..=h.retries {
                    match self.send_http(h, leg).await {
                        Ok(ok) => return Ok(ok),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    async fn send_http(&self, h: &HttpGateway, leg: &Leg) -> Result<String, String> {
        let mut vars: BTreeMap<&str, String> = BTreeMap::new();
        vars.insert("phone", leg.recipient.clone());
        vars.insert("recipient", leg.recipient.clone());
        vars.insert("message", leg.body.to_string());
        vars.insert("subject", leg.subject.clone().unwrap_or_default());
        vars.insert("channel", leg.channel.as_str().to_string());
        vars.insert(
            "secret",
            h.secret
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
        );
        let escaped = |f: &dyn Fn(&str) -> String| -> BTreeMap<&str, String> {
            vars.iter().map(|(k, v)| (*k, f(v))).collect()
        };
        let url = render(
            &h.url,
            &escaped(&|v| utf8_percent_encode(v, URL_VALUE).to_string()),
        );
        let method = match h.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        };
        let mut req = self
            .http
            .request(method, &url)
            .timeout(Duration::from_secs(u64::from(h.timeout_seconds)));
        for (name, value) in &h.headers {
            let value = render(value, &vars);
            if value.contains(['\r', '\n']) {
                return Err(format!("header {name}: the value would span lines"));
            }
            req = req.header(name.as_str(), value);
        }
        if let Some(body) = &h.body {
            let (text, content_type) = match h.body_encoding {
                BodyEncoding::Form => (
                    render(
                        body,
                        &escaped(&|v| utf8_percent_encode(v, URL_VALUE).to_string()),
                    ),
                    "application/x-www-form-urlencoded",
                ),
                BodyEncoding::Json => (render(body, &escaped(&json_escape)), "application/json"),
                BodyEncoding::Raw => (render(body, &vars), "text/plain; charset=utf-8"),
            };
            if !h
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("Content-Type", content_type);
            }
            req = req.body(text);
        }
        let resp = req.send().await.map_err(|e| {
            // reqwest's error names the URL, which may hold the text or the secret.
            if e.is_timeout() {
                "no answer within the timeout".to_string()
            } else if e.is_connect() {
                "could not connect".to_string()
            } else {
                "request failed".to_string()
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let status_ok = if h.success_status.is_empty() {
            (200..300).contains(&status)
        } else {
            h.success_status.contains(&status)
        };
        let body_ok = h
            .success_contains
            .as_ref()
            .is_none_or(|want| body.contains(want.as_str()));
        match (status_ok, body_ok) {
            (true, true) => Ok(format!("accepted (HTTP {status})")),
            (false, _) => Err(format!("HTTP {status}")),
            (true, false) => Err(format!(
                "HTTP {status} without the success text in the answer"
            )),
        }
    }
}

fn json_escape(v: &str) -> String {
    let quoted = serde_json::Value::String(v.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

async fn send_mail(s: &SmtpProfile, leg: &Leg) -> Result<String, String> {
    let from: Mailbox = match &s.from_name {
        Some(name) => format!("{name} <{}>", s.from),
        None => s.from.clone(),
    }
    .parse()
    .map_err(|e| format!("from address: {e}"))?;
    let to: Mailbox = leg
        .recipient
        .parse()
        .map_err(|e| format!("recipient address: {e}"))?;
    let builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(leg.subject.clone().unwrap_or_default());
    let email = match &leg.html {
        Some(html) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
            leg.body.to_string(),
            html.to_string(),
        )),
        None => builder
            .header(ContentType::TEXT_PLAIN)
            .body(leg.body.to_string()),
    }
    .map_err(|e| format!("message: {e}"))?;
    let tls = match s.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls | SmtpTls::Implicit => {
            let mut builder = TlsParameters::builder(s.host.clone());
            if let Some(pem) = &s.ca_pem {
                builder = builder
                    .certificate_store(lettre::transport::smtp::client::CertificateStore::None)
                    .add_root_certificate(
                        lettre::transport::smtp::client::Certificate::from_pem(pem.as_bytes())
                            .map_err(|e| format!("ca_pem: {e}"))?,
                    );
            }
            let params = builder.build_rustls().map_err(|e| format!("TLS: {e}"))?;
            if s.tls == SmtpTls::Starttls {
                Tls::Required(params)
            } else {
                Tls::Wrapper(params)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
        .port(s.port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(u64::from(s.timeout_seconds))));
    if let (Some(user), Some(pw)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
    }
    let transport = builder.build();
    let resp = transport
        .send(email)
        .await
        .map_err(|e| format!("SMTP: {e}"))?;
    Ok(format!("accepted (SMTP {})", resp.code()))
}

/// Shows a recipient in logs: the end of a phone number, the domain of an address.
pub fn masked(recipient: &str) -> String {
    match recipient.split_once('@') {
        Some((_, domain)) => format!("…@{domain}"),
        None => {
            let digits: Vec<char> = recipient.chars().collect();
            let keep = digits.len().min(3);
            format!(
                "…{}",
                digits[digits.len() - keep..].iter().collect::<String>()
            )
        }
    }
}

/// The pause before attempt `n + 1` after attempt `n` failed: 5 s, 15 s, 45 s, … at most 5 min.
fn backoff(n: u32) -> i64 {
    (5i64 * 3i64.pow(n.saturating_sub(1).min(5))).min(300)
}

/// Sends what is due, once: claims messages, tries their profiles in order, records each
/// attempt. Returns how many messages it took.
pub async fn deliver_due(engine: &Engine, store: &dyn OutboxStore, deliverer: &Deliverer) -> usize {
    let snap = engine.snapshot();
    // An attempt may take every profile's timeout and retries; the lease outlasts that, and
    // the attempt is cut off before the lease ends.
    let budget = snap
        .delivery_profiles
        .values()
        .map(|p| match &p.kind {
            DeliveryKind::Smtp(s) => i64::from(s.timeout_seconds),
            DeliveryKind::Http(h) => i64::from(h.timeout_seconds) * (i64::from(h.retries) + 1),
        })
        .sum::<i64>()
        + 10;
    let lease = budget + 20;
    let mut n = 0;
    // One message per claim: each is claimed just before its attempt, so that its lease covers
    // that attempt only.
    while n < BATCH as usize {
        let now = engine.clock().now();
        let msg = match store.claim_outbox(now, now + lease, 1).await {
            Ok(mut c) => match c.pop() {
                Some(m) => m,
                None => break,
            },
            Err(e) => {
                tracing::warn!(error = %e, "outbox not read");
                break;
            }
        };
        n += 1;
        let (result, detail) = match tokio::time::timeout(
            Duration::from_secs(u64::try_from(budget).unwrap_or(60)),
            attempt(&snap, deliverer, &msg, now),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                let error = "the attempt took longer than its profiles' timeouts".to_string();
                (
                    AttemptResult::Retry {
                        at: engine.clock().now() + backoff(msg.attempts),
                        error: error.clone(),
                    },
                    error,
                )
            }
        };
        let done_at = engine.clock().now();
        match store
            .finish_outbox(&msg.id, msg.attempts, &result, done_at)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(id = %msg.id, "an outbox attempt outlived its lease"),
            Err(e) => tracing::warn!(id = %msg.id, error = %e, "outbox attempt not recorded"),
        }
        let (outcome, level) = match &result {
            AttemptResult::Sent { .. } => ("ok", "sent"),
            AttemptResult::Retry { .. } => ("error", "will retry"),
            AttemptResult::Failed { .. } => ("error", "given up"),
        };
        let channel = msg.channel().map_or("", |c| c.as_str());
        tracing::info!(id = %msg.id, channel, attempt = msg.attempts, result = level, "delivery attempt");
        let record = AuditRecord::event(engine.clock().now_millis(), "outbox", "system", "deliver")
            .user(msg.username.clone(), None)
            .transaction(msg.transaction_id.as_ref().map(|t| t.as_str().to_string()))
            .ended(
                outcome,
                format!(
                    "{channel} to {} (message {}, attempt {}): {detail}",
                    masked(msg.recipient()),
                    msg.id,
                    msg.attempts
                ),
            );
        if let Err(e) = engine.audit(&record).await {
            tracing::warn!(error = %e, "delivery audit record not written");
        }
    }
    n
}

/// One attempt of one message: its profiles in order until one accepts it.
async fn attempt(
    snap: &tessera_core::engine::Snapshot,
    deliverer: &Deliverer,
    msg: &OutboxMessage,
    now: i64,
) -> (AttemptResult, String) {
    if now >= msg.not_after {
        let error = "expired before it could be sent".to_string();
        return (
            AttemptResult::Failed {
                error: error.clone(),
            },
            error,
        );
    }
    // The legs in order (primary channel, then fallback channels), each leg's profiles in
    // order.
    let mut errors = Vec::new();
    for leg in &msg.legs {
        let channel = leg.channel.as_str();
        for name in &leg.profiles {
            let Some(profile) = snap.delivery_profile(name) else {
                errors.push(format!("{channel} {name}: no such delivery profile"));
                continue;
            };
            if profile.is_smtp() != (leg.channel == Channel::Mail) {
                errors.push(format!("{channel} {name}: not a profile for {channel}"));
                continue;
            }
            match deliverer.send(profile, leg).await {
                Ok(ok) => {
                    let mut detail = format!("{channel} {name}: {ok}");
                    if !errors.is_empty() {
                        detail = format!("{} (after {})", detail, errors.join("; "));
                    }
                    return (
                        AttemptResult::Sent {
                            by: format!("{channel}:{name}"),
                        },
                        detail,
                    );
                }
                Err(e) => errors.push(format!("{channel} {name}: {e}")),
            }
        }
    }
    let error = if errors.is_empty() {
        "no delivery profile".to_string()
    } else {
        errors.join("; ")
    };
    let next = now + backoff(msg.attempts);
    if msg.attempts >= MAX_ATTEMPTS || next >= msg.not_after {
        (
            AttemptResult::Failed {
                error: error.clone(),
            },
            format!("{error}; given up"),
        )
    } else {
        (
            AttemptResult::Retry {
                at: next,
                error: error.clone(),
            },
            format!("{error}; next attempt in {} s", next - now),
        )
    }
}

/// Runs the outbox worker until `shutdown` resolves: a round whenever the engine queued a
/// message on this node, and every `poll` for what other nodes queued or what is due again.
pub async fn run_worker(
    engine: Arc<Engine>,
    outbox: Arc<dyn OutboxStore>,
    poll: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let deliverer = match Deliverer::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "the outbox worker cannot start: nothing will be delivered");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        // A message being sent when the server stops is sent again by the next attempt (after
        // its lease), here or on another node.
        loop {
            tokio::select! {
                n = deliver_due(&engine, outbox.as_ref(), &deliverer) => if n < BATCH as usize { break },
                _ = &mut shutdown => return,
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = engine.outbox_signal().notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_masked() {
        assert_eq!(masked("+4915100000001"), "…001");
        assert_eq!(masked("alice@example.org"), "…@example.org");
        assert_eq!(masked("1"), "…1");
    }

    #[test]
    fn backoff_grows_and_stops_at_five_minutes() {
        assert_eq!(backoff(1), 5);
        assert_eq!(backoff(2), 15);
        assert_eq!(backoff(3), 45);
        assert_eq!(backoff(9), 300);
    }

    #[test]
    fn json_values_are_escaped() {
        assert_eq!(json_escape("a\"b\n"), "a\\\"b\\n");
    }
}
