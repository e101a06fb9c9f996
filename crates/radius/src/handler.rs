//! One request in, at most one reply out: the RADIUS protocol over the engine, shared by the UDP
//! listeners and RadSec.

use crate::guard::{Dedup, RateLimits, RequestKey, Seen};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tessera_core::engine::{AuthRequest, Door, Engine, Outcome, RequestCtx};
use tessera_core::ids::TransactionId;
use tessera_core::model::{AuditRecord, RadiusClient};
use tessera_radius_proto::{
    Attribute, Code, Dictionary, Packet, RequestCheck, attr, encode_reply_to, unhide_password,
    verify_request,
};
use zeroize::Zeroizing;

/// Where a request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// UDP authentication (1812).
    Auth,
    /// UDP accounting (1813).
    Acct,
    /// RadSec (RADIUS over TLS, 2083): both, and the shared secret is "radsec" (RFC 6614 §2.3).
    Tls,
}

impl Port {
    fn as_str(self) -> &'static str {
        match self {
            Port::Auth => "auth",
            Port::Acct => "acct",
            Port::Tls => "radsec",
        }
    }
}

/// The shared secret of RADIUS over TLS (RFC 6614 §2.3).
pub const RADSEC_SECRET: &[u8] = b"radsec";

#[derive(Debug)]
pub struct Handler {
    engine: Arc<Engine>,
    dedup: Dedup,
    limits: RateLimits,
}

/// Why a packet got no answer (for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drop {
    Malformed,
    UnknownClient,
    WrongPort,
    BadAuthenticator,
    NoMessageAuthenticator,
    Duplicate,
    RateLimited,
    Internal,
}

impl Drop {
    fn as_str(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::UnknownClient => "unknown_client",
            Drop::WrongPort => "wrong_port",
            Drop::BadAuthenticator => "bad_authenticator",
            Drop::NoMessageAuthenticator => "no_message_authenticator",
            Drop::Duplicate => "duplicate_in_progress",
            Drop::RateLimited => "rate_limited",
            Drop::Internal => "internal_error",
        }
    }
}

fn dropped(reason: Drop, port: Port) -> Option<Vec<u8>> {
    metrics::counter!("tessera_radius_dropped_total", "reason" => reason.as_str(), "port" => port.as_str())
        .increment(1);
    None
}

impl Handler {
    pub fn new(engine: Arc<Engine>) -> Self {
        Handler {
            engine,
            dedup: Dedup::default(),
            limits: RateLimits::default(),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Forgets replies older than the duplicate window.
    pub fn purge(&self) {
        self.dedup.purge(Instant::now());
    }

    /// Handles one packet from `source`; returns the reply to send, if any. Packets that must
    /// be silently discarded (RFC 2865 §3) return `None` and are logged.
    pub async fn handle(&self, raw: &[u8], source: SocketAddr, port: Port) -> Option<Vec<u8>> {
        let packet = match Packet::decode(raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%source, error = %e, "malformed RADIUS packet dropped");
                return dropped(Drop::Malformed, port);
            }
        };
        let snap = self.engine.snapshot();
        let nas_id = packet.text(attr::NAS_IDENTIFIER);
        let Some(client) = snap.radius_client_for(source.ip(), nas_id.as_deref()) else {
            tracing::warn!(%source, nas_identifier = ?nas_id,
                "RADIUS request from an address that is no registered client dropped");
            return dropped(Drop::UnknownClient, port);
        };
        let expected = matches!(
            (packet.code, port),
            (Code::ACCESS_REQUEST, Port::Auth | Port::Tls)
                | (Code::ACCOUNTING_REQUEST, Port::Acct | Port::Tls)
                | (Code::STATUS_SERVER, _)
        );
        if !expected {
            tracing::warn!(%source, client = %client.name, code = %packet.code, port = port.as_str(),
                "unexpected RADIUS packet type on this port dropped");
            return dropped(Drop::WrongPort, port);
        }
        let secret: Zeroizing<Vec<u8>> = match (port, &client.secret) {
            (Port::Tls, _) => Zeroizing::new(RADSEC_SECRET.to_vec()),
            (_, Some(s)) if !s.expose().is_empty() => {
                Zeroizing::new(s.expose().as_bytes().to_vec())
            }
            _ => {
                tracing::error!(client = %client.name, "RADIUS client without a shared secret: request dropped");
                return dropped(Drop::Internal, port);
            }
        };
        match verify_request(raw, &secret) {
            Ok(RequestCheck::Valid) => {}
            Ok(RequestCheck::NoMessageAuthenticator) => {
                let required = match packet.code {
                    Code::ACCESS_REQUEST => {
                        client.require_message_authenticator && port != Port::Tls
                    }
                    Code::STATUS_SERVER => true,
                    _ => false,
                };
                if required {
                    tracing::warn!(%source, client = %client.name,
                        "Access-Request without Message-Authenticator dropped (BlastRADIUS protection); \
                         configure the NAS to send it, or set require_message_authenticator = false \
                         for this client if it cannot");
                    return dropped(Drop::NoMessageAuthenticator, port);
                }
            }
            Ok(RequestCheck::BadMessageAuthenticator | RequestCheck::BadRequestAuthenticator) => {
                tracing::warn!(%source, client = %client.name,
                    "RADIUS request with a wrong authenticator dropped: the shared secrets of the NAS \
                     and of Tessera differ, or the packet was forged");
                return dropped(Drop::BadAuthenticator, port);
            }
            Err(_) => return dropped(Drop::Malformed, port),
        }
        let key = RequestKey {
            source,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
        };
        match self.dedup.check(key, Instant::now()) {
            Seen::New => {}
            Seen::InProgress => return dropped(Drop::Duplicate, port),
            Seen::Answered(reply) => {
                metrics::counter!("tessera_radius_duplicates_total").increment(1);
                return Some(reply);
            }
        }
        if let Some(rate) = client.rate_limit
            && !self.limits.allow(&client.name, rate, Instant::now())
        {
            self.dedup.answered(key, None, Instant::now());
            tracing::info!(client = %client.name, rate, "RADIUS client over its rate limit: request dropped");
            return dropped(Drop::RateLimited, port);
        }
        let reply = match packet.code {
            Code::ACCESS_REQUEST => self.access(&packet, client, source, &secret).await,
            Code::ACCOUNTING_REQUEST => self.accounting(&packet, client, source).await,
            _ => Some((
                if port == Port::Acct {
                    Code::ACCOUNTING_RESPONSE
                } else {
                    Code::ACCESS_ACCEPT
                },
                Vec::new(),
            )),
        };
        let encoded = reply.and_then(|(code, mut attrs)| {
            // Proxy-State attributes go back unchanged and in order (RFC 2865 §5.33).
            attrs.extend(
                packet
                    .attributes
                    .iter()
                    .filter(|a| a.typ == attr::PROXY_STATE)
                    .cloned(),
            );
            match encode_reply_to(
                packet.code,
                code,
                packet.identifier,
                &packet.authenticator,
                &attrs,
                &secret,
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(client = %client.name, error = %e, "RADIUS reply could not be encoded");
                    None
                }
            }
        });
        self.dedup.answered(key, encoded.as_deref(), Instant::now());
        if encoded.is_none() {
            return dropped(Drop::Internal, port);
        }
        encoded
    }

    async fn access(
        &self,
        packet: &Packet,
        client: &RadiusClient,
        source: SocketAddr,
        secret: &[u8],
    ) -> Option<(Code, Vec<Attribute>)> {
        let started = Instant::now();
        let reject = |why: &str| {
            tracing::info!(client = %client.name, %source, "{why}");
            let mut attrs = Vec::new();
            if let Some(text) = &client.messages.reject {
                attrs.push(Attribute::new(attr::REPLY_MESSAGE, text.as_bytes()));
            }
            Some((Code::ACCESS_REJECT, attrs))
        };
        if packet.get(attr::EAP_MESSAGE).is_some() {
            return reject("EAP is not supported: configure the NAS for PAP");
        }
        let pass = match packet.get(attr::USER_PASSWORD) {
            Some(hidden) => match unhide_password(hidden, secret, &packet.authenticator) {
                Ok(pass) => pass,
                Err(_) => return reject("User-Password of a bad length"),
            },
            None if packet.get(attr::CHAP_PASSWORD).is_some() => {
                return reject(
                    "CHAP is not supported (passwords are checked by the user source): configure the NAS for PAP",
                );
            }
            // RFC 2865 §4.1: an Access-Request carries User-Password, CHAP-Password or State.
            // State alone answers a challenge with nothing typed (one that waits for a click).
            None if packet.get(attr::STATE).is_some() => Vec::new(),
            None => return reject("Access-Request without User-Password"),
        };
        let pass = Zeroizing::new(pass);
        let Ok(pass) = std::str::from_utf8(&pass) else {
            return reject("User-Password is not UTF-8");
        };
        let transaction_id = match packet.get(attr::STATE) {
            None => None,
            Some(state) => match std::str::from_utf8(state)
                .ok()
                .and_then(TransactionId::parse)
            {
                Some(id) => Some(id),
                None => return reject("State attribute that Tessera did not issue"),
            },
        };
        let dict = Dictionary::builtin();
        let lookup = |name: &str| dict.text_of(packet, name);
        let client_ip = end_user_ip(packet);
        let application = client.choose_application(&lookup, source.ip(), client_ip);
        let ctx = RequestCtx {
            client_ip,
            user_agent: Some(format!("NAS {} ({})", client.name, source.ip())),
            application,
            client: Some(client.name.clone()),
            ..RequestCtx::new(Door::Radius)
        };
        let req = AuthRequest {
            user: packet.text(attr::USER_NAME),
            pass: Zeroizing::new(pass.to_string()),
            transaction_id,
            ..AuthRequest::default()
        };
        // The NAS takes its turn in the hashing queue like any other client.
        let checked = tessera_core::hashing::as_caller(
            Some(source.ip()),
            self.engine.authenticate(&req, &ctx),
        );
        let outcome = match checked.await {
            Ok(o) => o,
            // Too many passwords wait to be checked: dropped, so that the NAS tries again.
            Err(e) if e.is_busy() => {
                tracing::warn!(client = %client.name, error = %e, "request shed");
                metrics::counter!("tessera_radius_shed_total", "client" => client.name.clone())
                    .increment(1);
                return None;
            }
            Err(e) => {
                // No answer: the NAS retries, or fails over to another RADIUS server.
                tracing::error!(client = %client.name, error = %e, "authentication failed with an internal error");
                return None;
            }
        };
        let result = outcome.result_str();
        metrics::counter!("tessera_auth_decisions_total", "door" => "radius", "result" => result)
            .increment(1);
        metrics::histogram!("tessera_auth_duration_seconds", "door" => "radius", "result" => result)
            .record(started.elapsed().as_secs_f64());
        let mut attrs = Vec::new();
        let code = match outcome {
            Outcome::Accept(a) => {
                for (name, value) in client.reply_attributes(&a.user, a.realm.as_str()) {
                    match dict.encode_named(&name, &value) {
                        Ok(at) => attrs.push(at),
                        Err(e) => tracing::warn!(client = %client.name, error = %e,
                            "reply attribute left out"),
                    }
                }
                if let Some(text) = &client.messages.accept {
                    attrs.push(Attribute::new(attr::REPLY_MESSAGE, text.as_bytes()));
                }
                Code::ACCESS_ACCEPT
            }
            Outcome::Challenge(c) => {
                attrs.push(Attribute::new(
                    attr::STATE,
                    c.transaction_id.as_str().as_bytes(),
                ));
                let text = client.messages.challenge.as_deref().unwrap_or(&c.message);
                attrs.push(Attribute::new(attr::REPLY_MESSAGE, truncate(text, 253)));
                Code::ACCESS_CHALLENGE
            }
            Outcome::Reject(_) => {
                if let Some(text) = &client.messages.reject {
                    attrs.push(Attribute::new(attr::REPLY_MESSAGE, text.as_bytes()));
                }
                Code::ACCESS_REJECT
            }
        };
        Some((code, attrs))
    }

    async fn accounting(
        &self,
        packet: &Packet,
        client: &RadiusClient,
        source: SocketAddr,
    ) -> Option<(Code, Vec<Attribute>)> {
        let dict = Dictionary::builtin();
        let status = dict
            .text_of(packet, "Acct-Status-Type")
            .unwrap_or_else(|| "unknown".into());
        let octets = |low: u8, high: u8| -> Option<u64> {
            let lo = packet.integer(low)?;
            let hi = packet.integer(high).unwrap_or(0);
            Some((u64::from(hi) << 32) | u64::from(lo))
        };
        let mut details = vec![format!(
            "session {}",
            packet
                .text(attr::ACCT_SESSION_ID)
                .unwrap_or_else(|| "-".into())
        )];
        if let Some(n) = octets(attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS) {
            details.push(format!("in {n} octets"));
        }
        if let Some(n) = octets(attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS) {
            details.push(format!("out {n} octets"));
        }
        if let Some(t) = packet.integer(attr::ACCT_SESSION_TIME) {
            details.push(format!("time {t} s"));
        }
        if let Some(ip) = packet.ipv4(attr::FRAMED_IP_ADDRESS) {
            details.push(format!("framed {ip}"));
        }
        if let Some(cause) = dict.text_of(packet, "Acct-Terminate-Cause") {
            details.push(format!("cause {cause}"));
        }
        let record = AuditRecord::event(
            self.engine.clock().now_millis(),
            Door::Radius.as_str(),
            format!("nas:{}", client.name),
            "accounting",
        )
        .user(packet.text(attr::USER_NAME), None)
        .client(
            end_user_ip(packet).map(|ip| ip.to_string()),
            Some(format!("NAS {} ({})", client.name, source.ip())),
        )
        .ended(status.to_ascii_lowercase(), details.join("; "));
        if let Err(e) = self.engine.audit(&record).await {
            // Not recorded, so not acknowledged: the NAS sends it again.
            tracing::error!(client = %client.name, error = %e, "accounting record could not be stored");
            return None;
        }
        metrics::counter!("tessera_radius_accounting_total", "status" => record.result.clone())
            .increment(1);
        Some((Code::ACCOUNTING_RESPONSE, Vec::new()))
    }
}

/// The end user's address: Framed-IP-Address, else Calling-Station-Id when it holds an address
/// (VPNs put the client's public address there; switches put a MAC address).
fn end_user_ip(packet: &Packet) -> Option<IpAddr> {
    if let Some(ip) = packet.ipv4(attr::FRAMED_IP_ADDRESS) {
        return Some(IpAddr::V4(ip));
    }
    packet
        .text(attr::CALLING_STATION_ID)
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
}

fn truncate(text: &str, max: usize) -> &[u8] {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
