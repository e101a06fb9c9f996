//! What stands between the socket and the engine: duplicate detection (RFC 5080 §2.2.2) and
//! per-client rate limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reply is kept for retransmissions. NASes retransmit within a few seconds; RFC 5080
/// asks for at least the client's retransmission window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(30);
/// Upper bound of remembered requests; beyond it the oldest expired ones go first, then new
/// requests are not remembered (they are still answered).
const DEDUP_MAX: usize = 200_000;

/// A request's identity for duplicate detection: the sender, the Identifier and the Request
/// Authenticator (a retransmission repeats all three; a new request changes the authenticator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestKey {
    pub source: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

#[derive(Debug)]
enum Entry {
    InProgress(Instant),
    Answered(Instant, Vec<u8>),
}

/// What to do with an arriving request.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: evaluate it.
    New,
    /// A retransmission of a request still being evaluated: drop it.
    InProgress,
    /// A retransmission of an answered request: send this reply again.
    Answered(Vec<u8>),
}

#[derive(Debug, Default)]
pub struct Dedup {
    entries: Mutex<HashMap<RequestKey, Entry>>,
}

impl Dedup {
    pub fn check(&self, key: RequestKey, now: Instant) -> Seen {
        let Ok(mut map) = self.entries.lock() else {
            return Seen::New;
        };
        match map.get(&key) {
            Some(Entry::InProgress(at)) if now.duration_since(*at) < DEDUP_WINDOW => {
                return Seen::InProgress;
            }
            Some(Entry::Answered(at, reply)) if now.duration_since(*at) < DEDUP_WINDOW => {
                return Seen::Answered(reply.clone());
            }
            _ => {}
        }
        if map.len() >= DEDUP_MAX {
            map.retain(|_, e| {
                let at = match e {
                    Entry::InProgress(at) | Entry::Answered(at, _) => *at,
                };
                now.duration_since(at) < DEDUP_WINDOW
            });
            if map.len() >= DEDUP_MAX {
                return Seen::New;
            }
        }
        map.insert(key, Entry::InProgress(now));
        Seen::New
    }

    /// Remembers the reply sent (`None`: the request was dropped; forget it so that a
    /// retransmission is evaluated again).
    pub fn answered(&self, key: RequestKey, reply: Option<&[u8]>, now: Instant) {
        if let Ok(mut map) = self.entries.lock() {
            match reply {
                Some(r) => {
                    map.insert(key, Entry::Answered(now, r.to_vec()));
                }
                None => {
                    map.remove(&key);
                }
            }
        }
    }

    /// Forgets expired entries.
    pub fn purge(&self, now: Instant) {
        if let Ok(mut map) = self.entries.lock() {
            map.retain(|_, e| {
                let at = match e {
                    Entry::InProgress(at) | Entry::Answered(at, _) => *at,
                };
                now.duration_since(at) < DEDUP_WINDOW
            });
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Token buckets per client: `rate` requests per second, bursts of up to one second's worth.
/// (A bucket is a few lines; a rate-limiting crate would bring more than it saves here.)
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimits {
    /// Takes one token for `client`; false when its budget is spent.
    pub fn allow(&self, client: &str, rate: u32, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return true;
        };
        let rate = f64::from(rate.max(1));
        let (tokens, last) = map.entry(client.to_string()).or_insert((rate, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> RequestKey {
        RequestKey {
            source: "127.0.0.1:5000".parse().unwrap(),
            identifier: id,
            authenticator: [id; 16],
        }
    }

    #[test]
    fn rfc5080_2_2_2_duplicates_get_the_cached_reply() {
        let d = Dedup::default();
        let t0 = Instant::now();
        assert_eq!(d.check(key(1), t0), Seen::New);
        assert_eq!(d.check(key(1), t0), Seen::InProgress);
        d.answered(key(1), Some(b"reply"), t0);
        assert_eq!(d.check(key(1), t0), Seen::Answered(b"reply".to_vec()));
        assert_eq!(d.check(key(2), t0), Seen::New);
        // After the window the same key is a new request.
        let later = t0 + DEDUP_WINDOW + Duration::from_secs(1);
        assert_eq!(d.check(key(1), later), Seen::New);
        d.purge(later + DEDUP_WINDOW + Duration::from_secs(1));
        assert!(d.is_empty());
    }

    #[test]
    fn dropped_requests_are_forgotten() {
        let d = Dedup::default();
        let t0 = Instant::now();
        assert_eq!(d.check(key(1), t0), Seen::New);
        d.answered(key(1), None, t0);
        assert_eq!(d.check(key(1), t0), Seen::New);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let r = RateLimits::default();
        let t0 = Instant::now();
        assert!(r.allow("vpn", 2, t0));
        assert!(r.allow("vpn", 2, t0));
        assert!(!r.allow("vpn", 2, t0));
        assert!(r.allow("other", 2, t0));
        assert!(r.allow("vpn", 2, t0 + Duration::from_millis(600)));
    }
}
