//! Argon2id hashing of passwords and PINs, off the async workers.
//!
//! Each hash costs about `argon2_memory_kib` of memory and tens of milliseconds of CPU, so
//! hashing runs on a fixed set of threads of its own: a burst of logins queues there instead of
//! stalling request handling (or the RADIUS packet loop), and memory stays bounded.
//!
//! The queue is shared fairly between callers (client addresses, set by the front doors with
//! [`as_caller`]): the threads take the callers' jobs in turn, so one address that sends
//! thousands of logins delays another's by one hash at most, not by its whole backlog. Each
//! caller may have [`QUEUED_PER_CALLER`] jobs waiting and all together [`QUEUED_TOTAL`]; beyond
//! that a hash is refused at once ([`HashError::Busy`]) and the door sheds the request (HTTP 503
//! with `Retry-After`, RADIUS: no answer, so that the NAS tries again).

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Jobs one caller may have waiting for a hashing thread.
pub const QUEUED_PER_CALLER: usize = 64;
/// Jobs all callers together may have waiting.
pub const QUEUED_TOTAL: usize = 1024;

tokio::task_local! {
    /// Whose request the current task serves: its client address (an IPv6 address by its /64).
    static CALLER: Option<IpAddr>;
}

/// Runs `work` (a request's handling) as `caller`'s: its hashes wait in `caller`'s turn.
pub async fn as_caller<F: std::future::Future>(caller: Option<IpAddr>, work: F) -> F::Output {
    CALLER
        .scope(caller.map(crate::netmatch::client_group), work)
        .await
}

/// The caller of the current task, if a front door named one.
fn current_caller() -> Option<IpAddr> {
    CALLER.try_with(|c| *c).ok().flatten()
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("invalid hashing parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Failed(String),
    /// Too many hashes wait already (from this caller, or from all): the request is shed.
    #[error("too many passwords to check at the moment; try again shortly")]
    Busy,
}

#[async_trait]
pub trait PasswordHasher: Send + Sync + std::fmt::Debug {
    /// Hashes with the current cost into a PHC string.
    async fn hash(&self, secret: &str) -> Result<String, HashError>;
    /// Checks `secret` against a PHC string (with the parameters stored in it). A malformed
    /// hash never matches. `Err` only when the check could not be made (the queue is full).
    async fn verify(&self, secret: &str, phc: &str) -> Result<bool, HashError>;
    /// Whether `phc` was made with the current algorithm and cost; a hash made elsewhere
    /// (migrated from privacyIDEA) or before a cost change is replaced at the next successful
    /// check.
    fn is_current(&self, phc: &str) -> bool;
    /// Spends about the time of one `verify`, so that an answer for an unknown user takes as
    /// long as one for a wrong password (and is shed alike when the queue is full).
    async fn waste_verify(&self) -> Result<(), HashError>;
    /// Sets the cost of new hashes.
    fn set_cost(&self, cost: HashCost);
}

/// A hashing job run on one of the hasher's threads.
type Job = Box<dyn FnOnce() + Send>;

/// The jobs waiting, per caller, and the callers with jobs waiting in the order they take
/// turns.
#[derive(Default)]
struct Queue {
    waiting: HashMap<Option<IpAddr>, VecDeque<Job>>,
    turns: VecDeque<Option<IpAddr>>,
    total: usize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("callers", &self.turns.len())
            .field("total", &self.total)
            .finish()
    }
}

impl Queue {
    /// Queues `job` as `caller`'s; gives it back when the caller's or the whole queue is full.
    fn push(&mut self, caller: Option<IpAddr>, job: Job) -> Result<(), Job> {
        let mine = self.waiting.entry(caller).or_default();
        if mine.len() >= QUEUED_PER_CALLER || self.total >= QUEUED_TOTAL {
            if mine.is_empty() {
                self.waiting.remove(&caller);
            }
            return Err(job);
        }
        if mine.is_empty() {
            self.turns.push_back(caller);
        }
        mine.push_back(job);
        self.total += 1;
        Ok(())
    }

    /// The next job: the first of the caller whose turn it is (who goes to the back of the
    /// line if more of its jobs wait).
    fn pop(&mut self) -> Option<Job> {
        let caller = self.turns.pop_front()?;
        let mine = self.waiting.get_mut(&caller)?;
        let job = mine.pop_front();
        if mine.is_empty() {
            self.waiting.remove(&caller);
        } else {
            self.turns.push_back(caller);
        }
        if job.is_some() {
            self.total -= 1;
        }
        job
    }
}

/// The queue the hashing threads share.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(q) => q,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A hashing thread: takes jobs in the callers' turns for as long as the process runs.
    fn work(&self) {
        loop {
            let job = {
                let mut q = self.lock();
                loop {
                    if let Some(job) = q.pop() {
                        break job;
                    }
                    q = match self.ready.wait(q) {
                        Ok(q) => q,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                }
            };
            job();
        }
    }
}

/// The Argon2id hasher.
///
/// Hashes run on a fixed set of threads of its own: each hash needs `argon2_memory_kib` of
/// working memory, and a fixed set of threads keeps the memory the allocator holds on to bounded
/// (a growing pool of threads, each with its own allocator arena, would not).
#[derive(Debug)]
pub struct Argon2Hasher {
    shared: Arc<Shared>,
    cost: Mutex<HashCost>,
    /// A hash of a random secret at the current cost, for `waste_verify`.
    decoy: Mutex<Option<(HashCost, String)>>,
}

impl Argon2Hasher {
    /// `concurrency` hashes run at once at most (usually the number of cores).
    pub fn new(concurrency: usize, cost: HashCost) -> Self {
        let shared = Arc::new(Shared::default());
        for i in 0..concurrency.max(1) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tessera-hash-{i}"))
                .spawn(move || shared.work());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a hashing thread");
            }
        }
        Argon2Hasher {
            shared,
            cost: Mutex::new(cost),
            decoy: Mutex::new(None),
        }
    }

    fn cost(&self) -> HashCost {
        self.cost.lock().map(|c| *c).unwrap_or_default()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The request went away while its job waited (the client hung up): no work for it.
            if done.is_closed() {
                return;
            }
            let _ = done.send(work());
        });
        if self.shared.lock().push(current_caller(), job).is_err() {
            return Err(HashError::Busy);
        }
        self.shared.ready.notify_one();
        result
            .await
            .map_err(|_| HashError::Failed("a hashing thread failed".into()))
    }
}

fn argon2(cost: HashCost) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError::Params(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes synchronously (for tools that provision many users, e.g. the benchmark).
pub fn hash_blocking(secret: &str, cost: HashCost) -> Result<String, HashError> {
    let hasher = argon2(cost)?;
    hasher
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

thread_local! {
    /// Each hashing thread's Argon2 working memory, kept between verifications: allocating and
    /// freeing 19 MiB per check makes the allocator hold on to far more than that.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Checks `secret` against a PHC string with the parameters stored in it, in this thread's
/// reusable working memory; the hash comparison is constant-time.
fn verify_blocking(secret: &[u8], phc: &str) -> bool {
    if phc.starts_with("$pbkdf2") {
        return verify_passlib_pbkdf2(secret, phc);
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let blocks_needed = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let computed = BLOCKS.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < blocks_needed {
            blocks.resize(blocks_needed, Block::default());
        }
        argon2
            .hash_password_into_with_memory(secret, salt, &mut out, &mut blocks[..blocks_needed])
            .is_ok()
    });
    computed && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Checks a PBKDF2 hash in passlib's format (`$pbkdf2-sha512$ROUNDS$SALT$CHECKSUM`, also
/// `-sha256` and `$pbkdf2$` for SHA-1), as privacyIDEA stores PINs and passwords when configured
/// for PBKDF2: salt and checksum in passlib's base64 (`.` for `+`, no padding). Never made by
/// Tessera; checked so that migrated PINs keep working until they are re-hashed.
fn verify_passlib_pbkdf2(secret: &[u8], phc: &str) -> bool {
    let parts: Vec<&str> = phc.split('$').collect();
    let [_, scheme, rounds, salt, checksum] = parts.as_slice() else {
        return false;
    };
    let ab64 = |t: &str| {
        let standard = t.replace('.', "+");
        data_encoding::BASE64_NOPAD.decode(standard.as_bytes()).ok()
    };
    let (Ok(rounds), Some(salt), Some(expected)) =
        (rounds.parse::<u32>(), ab64(salt), ab64(checksum))
    else {
        return false;
    };
    // Bounded like Argon2's own parameters: a stored hash cannot make a check take minutes.
    if rounds == 0 || rounds > 10_000_000 {
        return false;
    }
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    match *scheme {
        "pbkdf2-sha512" => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(secret, &salt, rounds, &mut out),
        "pbkdf2-sha256" => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(secret, &salt, rounds, &mut out),
        "pbkdf2" => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(secret, &salt, rounds, &mut out),
        _ => return false,
    }
    !expected.is_empty() && bool::from(out.as_slice().ct_eq(&expected))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    fn is_current(&self, phc: &str) -> bool {
        let cost = self.cost();
        let Ok(hash) = PasswordHash::new(phc) else {
            return false;
        };
        let Ok(params) = Params::try_from(&hash) else {
            return false;
        };
        hash.algorithm.as_str() == "argon2id"
            && hash.version == Some(0x13)
            && params.m_cost() == cost.memory_kib
            && params.t_cost() == cost.iterations
            && params.p_cost() == cost.parallelism
    }

    async fn hash(&self, secret: &str) -> Result<String, HashError> {
        let cost = self.cost();
        let secret = Zeroizing::new(secret.to_string());
        self.blocking(move || hash_blocking(&secret, cost)).await?
    }

    async fn verify(&self, secret: &str, phc: &str) -> Result<bool, HashError> {
        let secret = Zeroizing::new(secret.as_bytes().to_vec());
        let phc = phc.to_string();
        self.blocking(move || verify_blocking(&secret, &phc)).await
    }

    async fn waste_verify(&self) -> Result<(), HashError> {
        let cost = self.cost();
        let cached = self
            .decoy
            .lock()
            .ok()
            .and_then(|d| d.clone())
            .filter(|(c, _)| *c == cost)
            .map(|(_, h)| h);
        let decoy = match cached {
            Some(h) => h,
            None => {
                let h = self
                    .blocking(move || hash_blocking("tessera-decoy-password", cost))
                    .await??;
                if let Ok(mut d) = self.decoy.lock() {
                    *d = Some((cost, h.clone()));
                }
                h
            }
        };
        self.verify("not-the-decoy-password", &decoy).await?;
        Ok(())
    }

    fn set_cost(&self, cost: HashCost) {
        if let Ok(mut c) = self.cost.lock() {
            *c = cost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passlib_pbkdf2_hashes_verify() {
        // Made by passlib 1.7 (privacyIDEA's pass_hash with PI_HASH_ALGO_LIST =
        // ['pbkdf2_sha512']) for the PIN "1234".
        let h = "$pbkdf2-sha512$25000$6L23ljLGmJPy3vu/17pXSg$GVDZQJP4.MF2W3IKO7m5M7VFGkA4FtWo4M3hJA.kUr7op2LctCKFZ2bL92POnjlvjtAyjxDqyScFlIPv3hNj7w";
        assert!(verify_blocking(b"1234", h));
        assert!(!verify_blocking(b"1235", h));
        assert!(!verify_blocking(
            b"1234",
            "$pbkdf2-sha512$0$YkwJgXBuDUGo1bp3zvn/Xw$ioLX"
        ));
        assert!(!verify_blocking(b"1234", "$pbkdf2-md5$1$YQ$YQ"));
    }

    fn cheap() -> HashCost {
        HashCost {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Argon2Hasher::new(2, cheap());
        let phc = h.hash("correct horse").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(h.verify("correct horse", &phc).await.unwrap());
        assert!(!h.verify("wrong horse", &phc).await.unwrap());
        assert!(!h.verify("correct horse", "not a phc string").await.unwrap());
    }

    #[tokio::test]
    async fn cost_changes_apply_to_new_hashes_only() {
        let h = Argon2Hasher::new(1, cheap());
        let old = h.hash("pin").await.unwrap();
        h.set_cost(HashCost {
            memory_kib: 9 * 1024,
            iterations: 2,
            parallelism: 1,
        });
        let new = h.hash("pin").await.unwrap();
        assert!(new.contains("m=9216,t=2"));
        assert!(h.verify("pin", &old).await.unwrap());
        h.waste_verify().await.unwrap();
    }

    /// A vector of the Argon2 reference implementation ("password", salt "somesalt"), checked
    /// in reused working memory after a smaller hash, and a tampered copy.
    #[test]
    fn argon2_reference_vector_in_reused_memory() {
        let small = hash_blocking("x", cheap()).unwrap();
        assert!(verify_blocking(b"x", &small));
        let reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(verify_blocking(b"password", reference));
        assert!(!verify_blocking(b"sassword", reference));
        let tampered = reference.replace("CTFh", "CTFi");
        assert!(!verify_blocking(b"password", &tampered));
        assert!(
            verify_blocking(b"x", &small),
            "smaller hash after a larger one"
        );
        assert!(!verify_blocking(
            b"x",
            "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ"
        ));
        assert!(!verify_blocking(
            b"x",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E"
        ));
    }

    /// Callers take turns: a caller with a backlog does not hold up another's job, and each
    /// caller's queue is bounded.
    #[test]
    fn callers_take_turns_and_queues_are_bounded() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let job = |tag: &'static str| -> Job {
            let order = order.clone();
            Box::new(move || order.lock().unwrap().push(tag))
        };
        let a: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let b: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        let mut q = Queue::default();
        for _ in 0..3 {
            assert!(q.push(a, job("a")).is_ok());
        }
        assert!(q.push(b, job("b")).is_ok());
        while let Some(j) = q.pop() {
            j();
        }
        assert_eq!(*order.lock().unwrap(), ["a", "b", "a", "a"]);
        assert_eq!(q.total, 0);
        for _ in 0..QUEUED_PER_CALLER {
            assert!(q.push(a, job("a")).is_ok());
        }
        assert!(q.push(a, job("a")).is_err(), "a's queue is full");
        assert!(q.push(b, job("b")).is_ok(), "b's is not");
    }

    #[test]
    fn bad_params_are_an_error() {
        let bad = HashCost {
            memory_kib: 1,
            iterations: 0,
            parallelism: 0,
        };
        assert!(hash_blocking("x", bad).is_err());
    }
}
