//! The load: `concurrency` workers, each on its own keep-alive HTTP/1.1 connection, sending
//! `/validate/check` as fast as answers come back (closed loop) or at a fixed rate.

use crate::provision::{PIN, seed};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tessera_otp::{Algorithm, Digits, OtpKey};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fresh, valid OTPs: each code is used once.
    Accept,
    /// Wrong OTPs.
    Reject,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Accept => "accept",
            Mode::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub users: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests per second in total; `None`: as fast as possible.
    pub rate: Option<f64>,
    pub pin: bool,
    /// RADIUS: the password (the PIN value) first, then the OTP answering the Access-Challenge.
    pub two_rounds: bool,
    /// The local address the connections come from (default: the system's choice).
    pub source: Option<std::net::IpAddr>,
    /// A flood: PIN-typed answers for users nobody has (each costs the server one Argon2id
    /// check); REJECT, or a request refused for load (429, 503), is what it expects.
    pub flood: bool,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub latencies_us: Vec<u32>,
    /// Answers as expected (ACCEPT on the accept path, REJECT on the reject path).
    pub expected: u64,
    pub unexpected: u64,
    pub errors: u64,
    /// Times a worker found no user with a fresh OTP left in this time step.
    pub exhausted: u64,
    /// Answers 429 (the address's budget) or 503 (shed: too many checks waiting).
    pub shed: u64,
    pub measured: Duration,
}

impl Outcome {
    /// Counts one answer (`None`: no answer, an error) and, when it was sent after the
    /// warm-up, its latency.
    pub fn record(&mut self, expected: Option<bool>, sent: Instant, measure_from: Instant) {
        let took = sent.elapsed();
        match expected {
            Some(true) => self.expected += 1,
            Some(false) => self.unexpected += 1,
            None => {
                self.errors += 1;
                return;
            }
        }
        if sent >= measure_from {
            self.latencies_us
                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }
}

pub struct Shared {
    pub next: AtomicU64,
    /// Per user: the last time step whose code was sent (accept path).
    last_step: Vec<AtomicI64>,
}

fn unix_now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    (secs / 30, secs % 30)
}

fn code(i: u64, step: i64) -> String {
    OtpKey::new(seed(i), Algorithm::Sha1, Digits::Six).code(u64::try_from(step).unwrap_or(0))
}

/// The next (user, OTP) to send, or `None` when every user's fresh codes are used up.
pub fn next_request(spec: &LoadSpec, shared: &Shared) -> Option<(u64, String)> {
    let (step, into) = unix_now();
    match spec.mode {
        Mode::Reject => {
            let i = shared.next.fetch_add(1, Ordering::Relaxed) % spec.users;
            // A code the server cannot accept now: none of the steps around this one (a code
            // from far away could, one time in a few hundred thousand, be equal to one).
            let valid: Vec<String> = (step - 2..=step + 2).map(|s| code(i, s)).collect();
            let mut wrong = code(i, step + 1000);
            while valid.contains(&wrong) {
                let n: u32 = wrong.parse().unwrap_or(0);
                wrong = format!("{:06}", (n + 1) % 1_000_000);
            }
            Some((i, wrong))
        }
        Mode::Accept => {
            // The server accepts steps now-1 ..= now+1, each token's in ascending order. Near
            // the end of a step, skip now-1: the server may already be in the next step.
            let low = if into >= 27 { step } else { step - 1 };
            let tries = spec.users.min(10_000);
            for _ in 0..tries {
                let i = shared.next.fetch_add(1, Ordering::Relaxed) % spec.users;
                let slot = &shared.last_step[i as usize];
                let last = slot.load(Ordering::Relaxed);
                let candidate = (last + 1).max(low);
                if candidate > step + 1 {
                    continue;
                }
                if slot
                    .compare_exchange(last, candidate, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some((i, code(i, candidate)));
                }
            }
            None
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr, source: Option<std::net::IpAddr>) -> Result<Sender> {
    let stream = match source {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = match ip {
                std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await
        }
    }
    .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(spec: Arc<LoadSpec>, shared: Arc<Shared>, start: Instant) -> Outcome {
    let mut out = Outcome::default();
    let end = start + spec.warmup + spec.duration;
    let measure_from = start + spec.warmup;
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.concurrency as f64 / r.max(0.001)));
    let mut next_send = Instant::now();
    let mut sender: Option<Sender> = None;
    let expect = match spec.mode {
        Mode::Accept => "\"authentication\":\"ACCEPT\"",
        Mode::Reject => "\"authentication\":\"REJECT\"",
    };
    while Instant::now() < end {
        if let Some(iv) = interval {
            next_send += iv;
            tokio::time::sleep_until(next_send.into()).await;
        }
        let body = if spec.flood {
            let n = shared.next.fetch_add(1, Ordering::Relaxed);
            format!("user=nobody{n}&pass={PIN}000000")
        } else {
            let Some((user, otp)) = next_request(&spec, &shared) else {
                out.exhausted += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let pass = if spec.pin { format!("{PIN}{otp}") } else { otp };
            format!("user=u{user}&pass={pass}")
        };
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(spec.addr, spec.source).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    out.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let req = Request::post("/validate/check")
            .header("host", spec.addr.to_string())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            out.errors += 1;
            continue;
        };
        let sent = Instant::now();
        let result = async {
            let res = s.send_request(req).await?;
            let status = res.status();
            let bytes = res.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        }
        .await;
        match result {
            Ok((status, _)) if spec.flood && (status == 429 || status == 503) => {
                out.shed += 1;
                out.record(Some(true), sent, measure_from);
            }
            Ok((status, bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                out.record(
                    Some(status.is_success() && text.contains(expect)),
                    sent,
                    measure_from,
                );
            }
            Err(_) => {
                out.errors += 1;
                sender = None;
            }
        }
    }
    out.measured = spec.duration;
    out
}

/// The state workers share. Starts at a random user, so that runs on the same data do not
/// reuse codes spent by the run before.
pub fn shared_for(spec: &LoadSpec) -> Arc<Shared> {
    let offset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0)
        % spec.users;
    Arc::new(Shared {
        next: AtomicU64::new(offset),
        last_step: (0..spec.users)
            .map(|_| AtomicI64::new(i64::MIN / 2))
            .collect(),
    })
}

pub async fn run(spec: LoadSpec) -> Outcome {
    let shared = shared_for(&spec);
    run_shared(spec, shared).await
}

/// `run` with the state of an earlier run on the same users (so that no code is sent twice).
pub async fn run_shared(spec: LoadSpec, shared: Arc<Shared>) -> Outcome {
    let spec = Arc::new(spec);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..spec.concurrency {
        tasks.push(tokio::spawn(worker(spec.clone(), shared.clone(), start)));
    }
    collect(tasks, spec.duration).await
}

/// Adds up the workers' outcomes.
pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcome>>, measured: Duration) -> Outcome {
    let mut total = Outcome {
        measured,
        ..Outcome::default()
    };
    for t in tasks {
        if let Ok(o) = t.await {
            total.latencies_us.extend(o.latencies_us);
            total.expected += o.expected;
            total.unexpected += o.unexpected;
            total.errors += o.errors;
            total.exhausted += o.exhausted;
            total.shed += o.shed;
        }
    }
    total.latencies_us.sort_unstable();
    total
}

/// The `p`-th percentile (0–100) in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted_us.len() as f64 - 1.0)).round() as usize;
    f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0
}
