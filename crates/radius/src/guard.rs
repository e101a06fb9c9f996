//! What stands between the socket and the engine: duplicate detection (RFC 5080 §2.2.2) and
//! per-client rate limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reply is kept for retransmissions. NASes retransmit within a few seconds; RFC 5080
/// asks for at least the client's retransmission window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(30);
/// Upper bound of requests remembered per half window; beyond it new requests are not
/// remembered (they are still answered).
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

/// Remembered requests in two generations: new entries go into the current one, lookups see
/// both, and every half window the older generation is dropped whole, so an entry lives between
/// half a window and a window and no request ever scans the table.
#[derive(Debug, Default)]
struct Generations {
    current: HashMap<RequestKey, Entry>,
    previous: HashMap<RequestKey, Entry>,
    rotated_at: Option<Instant>,
}

impl Generations {
    fn rotate(&mut self, now: Instant) {
        let due = self
            .rotated_at
            .is_none_or(|t| now.saturating_duration_since(t) >= DEDUP_WINDOW / 2);
        if due {
            self.previous = std::mem::take(&mut self.current);
            self.rotated_at = Some(now);
        }
    }
}

#[derive(Debug, Default)]
pub struct Dedup {
    entries: Mutex<Generations>,
}

fn fresh(e: &Entry, now: Instant) -> bool {
    let at = match e {
        Entry::InProgress(at) | Entry::Answered(at, _) => *at,
    };
    now.saturating_duration_since(at) < DEDUP_WINDOW
}

impl Dedup {
    pub fn check(&self, key: RequestKey, now: Instant) -> Seen {
        let Ok(mut g) = self.entries.lock() else {
            return Seen::New;
        };
        g.rotate(now);
        let found = g.current.get(&key).or_else(|| g.previous.get(&key));
        match found {
            Some(e @ Entry::InProgress(_)) if fresh(e, now) => return Seen::InProgress,
            Some(e @ Entry::Answered(_, reply)) if fresh(e, now) => {
                return Seen::Answered(reply.clone());
            }
            _ => {}
        }
        // Bounded: beyond it new requests are still answered, just not remembered.
        if g.current.len() < DEDUP_MAX {
            g.current.insert(key, Entry::InProgress(now));
        }
        Seen::New
    }

    /// Remembers the reply sent (`None`: the request was dropped; forget it so that a
    /// retransmission is evaluated again).
    pub fn answered(&self, key: RequestKey, reply: Option<&[u8]>, now: Instant) {
        if let Ok(mut g) = self.entries.lock() {
            g.previous.remove(&key);
            match reply {
                Some(r) if g.current.len() < DEDUP_MAX || g.current.contains_key(&key) => {
                    g.current.insert(key, Entry::Answered(now, r.to_vec()));
                }
                _ => {
                    g.current.remove(&key);
                }
            }
        }
    }

    /// Drops the older generation when it is due.
    pub fn purge(&self, now: Instant) {
        if let Ok(mut g) = self.entries.lock() {
            g.rotate(now);
        }
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|g| g.current.len() + g.previous.len())
            .unwrap_or(0)
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
        // Within half a window an entry is still there after a rotation; after two it is gone.
        d.purge(later + DEDUP_WINDOW / 2);
        assert_eq!(d.check(key(1), later + DEDUP_WINDOW / 2), Seen::InProgress);
        d.purge(later + DEDUP_WINDOW * 2);
        d.purge(later + DEDUP_WINDOW * 3);
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
