//! The RADIUS load: `concurrency` workers, each with its own UDP socket, sending PAP
//! Access-Requests (with Message-Authenticator) one at a time and checking every reply's
//! authenticators, as a NAS does. Also drives FreeRADIUS for the baseline.

use crate::load::{LoadSpec, Mode, Outcome, next_request, shared_for};
use crate::provision::PIN;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_radius_proto::{
    Attribute, Code, Packet, attr, encode_request, hide_password, verify_reply,
};
use tokio::net::UdpSocket;

pub const SECRET: &str = "bench-shared-secret";
const TIMEOUT: Duration = Duration::from_secs(3);

/// Who answers: Tessera (OTP, or PIN+OTP) or FreeRADIUS (user `u<i>`, password `p<i>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Tessera,
    FreeRadius,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: request authenticators only need to be unpredictable enough not to
        // repeat; the load generator is not a security boundary.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn authenticator(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.next().to_be_bytes());
        a[8..].copy_from_slice(&self.next().to_be_bytes());
        a
    }
}

/// Sends one Access-Request and waits for its reply: the reply's code, or `None` on timeout or
/// a reply that does not verify.
pub async fn exchange(
    socket: &UdpSocket,
    id: u8,
    authenticator: [u8; 16],
    user: &str,
    password: &str,
) -> Option<Code> {
    exchange_state(socket, id, authenticator, user, password, None)
        .await
        .map(|p| p.code)
}

/// Like [`exchange`], with a `State` to send; returns the whole reply.
pub async fn exchange_state(
    socket: &UdpSocket,
    id: u8,
    authenticator: [u8; 16],
    user: &str,
    password: &str,
    state: Option<&[u8]>,
) -> Option<Packet> {
    let hidden = hide_password(password.as_bytes(), SECRET.as_bytes(), &authenticator).ok()?;
    let mut attrs = vec![
        Attribute::new(attr::USER_NAME, user.as_bytes()),
        Attribute::new(attr::USER_PASSWORD, hidden),
        Attribute::new(attr::NAS_IDENTIFIER, &b"bench"[..]),
    ];
    if let Some(s) = state {
        attrs.push(Attribute::new(attr::STATE, s));
    }
    let raw = encode_request(
        Code::ACCESS_REQUEST,
        id,
        &authenticator,
        &attrs,
        SECRET.as_bytes(),
        true,
    )
    .ok()?;
    socket.send(&raw).await.ok()?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let n = tokio::time::timeout(left, socket.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        // A late reply to an earlier request of this socket: skip it.
        if n < 20 || buf[1] != id {
            continue;
        }
        return verify_reply(&buf[..n], &authenticator, SECRET.as_bytes(), false).ok();
    }
}

async fn worker(
    spec: Arc<LoadSpec>,
    shared: Arc<crate::load::Shared>,
    target: Target,
    addr: SocketAddr,
    start: Instant,
    seed: u64,
) -> Outcome {
    let mut out = Outcome::default();
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
        out.errors += 1;
        return out;
    };
    if socket.connect(addr).await.is_err() {
        out.errors += 1;
        return out;
    }
    let mut rng = Rng(seed | 1);
    let mut id: u8 = 0;
    let end = start + spec.warmup + spec.duration;
    let measure_from = start + spec.warmup;
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.concurrency as f64 / r.max(0.001)));
    let mut next_send = Instant::now();
    let expect = match spec.mode {
        Mode::Accept => Code::ACCESS_ACCEPT,
        Mode::Reject => Code::ACCESS_REJECT,
    };
    while Instant::now() < end {
        if let Some(iv) = interval {
            next_send += iv;
            tokio::time::sleep_until(next_send.into()).await;
        }
        let (user, password) = match target {
            Target::Tessera => {
                let Some((user, otp)) = next_request(&spec, &shared) else {
                    out.exhausted += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let pass = if spec.pin { format!("{PIN}{otp}") } else { otp };
                (user, pass)
            }
            Target::FreeRadius => {
                let i = shared
                    .next
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % spec.users;
                let pass = match spec.mode {
                    Mode::Accept => format!("p{i}"),
                    Mode::Reject => format!("wrong{i}"),
                };
                (i, pass)
            }
        };
        id = id.wrapping_add(1);
        let sent = Instant::now();
        let name = format!("u{user}");
        let answer = if spec.two_rounds && target == Target::Tessera {
            // Round one: the password; round two: the OTP with the challenge's State.
            match exchange_state(&socket, id, rng.authenticator(), &name, PIN, None).await {
                Some(c) if c.code == Code::ACCESS_CHALLENGE => {
                    let state = c.get(attr::STATE).map(<[u8]>::to_vec);
                    id = id.wrapping_add(1);
                    exchange_state(
                        &socket,
                        id,
                        rng.authenticator(),
                        &name,
                        &password,
                        state.as_deref(),
                    )
                    .await
                    .map(|p| p.code)
                }
                Some(other) => Some(other.code),
                None => None,
            }
        } else {
            exchange(&socket, id, rng.authenticator(), &name, &password).await
        };
        out.record(answer.map(|code| code == expect), sent, measure_from);
    }
    out.measured = spec.duration;
    out
}

pub async fn run(spec: LoadSpec, target: Target, addr: SocketAddr) -> Outcome {
    let shared = shared_for(&spec);
    let spec = Arc::new(spec);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..spec.concurrency {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            ^ ((w as u64 + 1) << 32);
        tasks.push(tokio::spawn(worker(
            spec.clone(),
            shared.clone(),
            target,
            addr,
            start,
            seed,
        )));
    }
    crate::load::collect(tasks, spec.duration).await
}
