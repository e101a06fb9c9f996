//! `tessera-bench`: Tessera's own load generator (DESIGN.md §7).
//!
//! Provisions N users with TOTP tokens (directly in the store, in bulk), starts `tessera serve`
//! on them, drives `/validate/check` over keep-alive HTTP, or RADIUS Access-Requests over UDP,
//! at concurrency C for D seconds on the accept path (fresh valid OTPs, each used once) and/or
//! the reject path (wrong OTPs), and prints requests/s, p50/p99, errors and the server's peak
//! RSS. With `--compare-freeradius`, FreeRADIUS 3 answering PAP from a users file is measured
//! the same way in the same run. See docs/benchmark.md.

mod freeradius;
mod load;
mod provision;
mod radius_load;

use anyhow::{Context, Result, bail};
use clap::Parser;
use load::{LoadSpec, Mode};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tessera_core::hashing::HashCost;

#[derive(Debug, Parser)]
#[command(
    name = "tessera-bench",
    about = "Load generator for Tessera's /validate/check"
)]
struct Args {
    /// The tessera binary to start (default: `tessera` next to this program).
    #[arg(long)]
    tessera: Option<PathBuf>,
    /// Database: sqlite (a fresh file) or a postgres://… URL (an empty database).
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Users, each with one TOTP token.
    #[arg(long, default_value_t = 50_000)]
    users: u64,
    /// Paths to drive, in order: accept, reject or both.
    #[arg(long, default_value = "accept,reject")]
    mode: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds measured per path.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds sent before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Total requests per second (open loop); default: as fast as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Tokens have the PIN 4711, typed before the OTP (one Argon2id check per request).
    #[arg(long)]
    pin: bool,
    /// Argon2id memory (KiB) of the PIN hash.
    #[arg(long, default_value_t = 19 * 1024)]
    argon2_memory_kib: u32,
    /// Argon2id iterations of the PIN hash.
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    /// Keep the data in this directory (and reuse it when it already holds a run's data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// http (POST /validate/check) or radius (PAP Access-Request over UDP).
    #[arg(long, default_value = "http")]
    protocol: String,
    /// RADIUS: also measure FreeRADIUS 3 answering PAP from a users file (needs `freeradius`).
    #[arg(long)]
    compare_freeradius: bool,
    /// RADIUS: log in in two rounds (password 4711, then the OTP after an Access-Challenge);
    /// one Argon2id check per login.
    #[arg(long)]
    two_rounds: bool,
    /// The user_cache_seconds setting of the provisioned data (0: no user cache, the default).
    #[arg(long, default_value_t = 0)]
    user_cache_seconds: u32,
    /// Users in FreeRADIUS's users file (default: --users, at most 20,000).
    #[arg(long)]
    freeradius_users: Option<u64>,
    /// Legitimate PIN+OTP logins from 127.0.0.1 at --legit-rate per second, first alone, then
    /// while 127.0.0.2 floods at ten times that rate with PIN-typed logins of unknown users
    /// (one Argon2id check each); reports the legitimate logins' p50/p99 in both phases.
    #[arg(long)]
    flood: bool,
    /// The legitimate logins per second of --flood.
    #[arg(long, default_value_t = 10.0)]
    legit_rate: f64,
    /// Keep account locking on, as shipped (accept path only: rejects would lock the users).
    #[arg(long)]
    account_locking: bool,
}

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    radius: Option<std::net::SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &PathBuf, data: &std::path::Path, url: &str, key: &str) -> Result<Server> {
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--http-listen",
            "127.0.0.1:0",
            "--radius-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--data-dir",
        ])
        .arg(data)
        .args(["--database-url", url])
        .env("TESSERA_MASTER_KEY", key)
        .env("TESSERA_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let (rtx, rrx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim().to_string());
            } else if let Some(rest) = line.trim_start().strip_prefix("RADIUS:") {
                // "RADIUS:   127.0.0.1:40000/udp (accounting …)"
                let addr = rest.split_whitespace().next().unwrap_or("");
                let _ = rtx.send(addr.trim_end_matches("/udp").to_string());
            } else if line.contains("error") {
                eprintln!("server: {line}");
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .context("the server did not start")?;
    let radius = rrx
        .recv_timeout(Duration::from_secs(5))
        .ok()
        .and_then(|a| a.parse().ok());
    Ok(Server {
        child,
        addr: addr.parse()?,
        radius,
    })
}

/// One measured path as a JSON row (`extra` adds the run's parameters); printed as a line
/// unless the output is JSON.
fn report(
    server: &str,
    mode: Mode,
    out: &load::Outcome,
    extra: serde_json::Value,
    json: bool,
) -> serde_json::Value {
    let rps = out.latencies_us.len() as f64 / out.measured.as_secs_f64();
    let p50 = load::percentile_ms(&out.latencies_us, 50.0);
    let p99 = load::percentile_ms(&out.latencies_us, 99.0);
    let max = load::percentile_ms(&out.latencies_us, 100.0);
    let mut row = serde_json::json!({
        "server": server,
        "mode": mode.as_str(),
        "requests_per_second": (rps * 10.0).round() / 10.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "measured_requests": out.latencies_us.len(),
        "expected_answers": out.expected,
        "unexpected_answers": out.unexpected,
        "errors": out.errors,
    });
    if let (Some(r), serde_json::Value::Object(e)) = (row.as_object_mut(), extra) {
        r.extend(e);
    }
    if !json {
        println!(
            "{server:<10} {:<6} {rps:>9.1} req/s  p50 {p50:>7.2} ms  p99 {p99:>7.2} ms  max {max:>8.2} ms  unexpected {}  errors {}{}",
            mode.as_str(),
            out.unexpected,
            out.errors,
            if out.exhausted > 0 {
                format!(
                    "  (fresh OTPs ran out {} times: use more --users)",
                    out.exhausted
                )
            } else {
                String::new()
            }
        );
    }
    row
}

/// `--flood`: the legitimate logins alone, then beside the flood; their rows and the flood's.
async fn flood(args: &Args, addr: std::net::SocketAddr, cost: HashCost) -> Vec<serde_json::Value> {
    let legit = LoadSpec {
        addr,
        mode: Mode::Accept,
        users: args.users,
        concurrency: args.concurrency.min(8),
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        rate: Some(args.legit_rate),
        pin: true,
        two_rounds: false,
        source: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        flood: false,
    };
    let flooder = LoadSpec {
        mode: Mode::Reject,
        concurrency: args.concurrency.max(16),
        rate: Some(args.legit_rate * 10.0),
        pin: true,
        source: Some(std::net::IpAddr::from([127, 0, 0, 2])),
        flood: true,
        ..legit.clone()
    };
    let params = |phase: &str, from: &str, rate: f64| {
        serde_json::json!({
            "protocol": "http",
            "phase": phase,
            "from": from,
            "rate": rate,
            "argon2": format!("m={} KiB, t={}, p=1", cost.memory_kib, cost.iterations),
        })
    };
    eprintln!(
        "legitimate PIN+OTP logins from 127.0.0.1 at {}/s, alone, {} s (+{} s warm-up)…",
        args.legit_rate, args.duration, args.warmup
    );
    // Both phases of the legitimate logins share one state: no code is sent twice.
    let shared = load::shared_for(&legit);
    let idle = load::run_shared(legit.clone(), shared.clone()).await;
    let mut rows = vec![report(
        "legit-idle",
        Mode::Accept,
        &idle,
        params("idle", "127.0.0.1", args.legit_rate),
        args.json,
    )];
    eprintln!(
        "…and again while 127.0.0.2 floods at {}/s with PIN-typed logins of unknown users…",
        args.legit_rate * 10.0
    );
    let flood_run = tokio::spawn(load::run(flooder));
    let busy = load::run_shared(legit, shared).await;
    let flooded = flood_run.await.unwrap_or_default();
    rows.push(report(
        "legit-flood",
        Mode::Accept,
        &busy,
        params("under flood", "127.0.0.1", args.legit_rate),
        args.json,
    ));
    let mut row = report(
        "flood",
        Mode::Reject,
        &flooded,
        params("under flood", "127.0.0.2", args.legit_rate * 10.0),
        args.json,
    );
    row["shed_429_or_503"] = serde_json::json!(flooded.shed);
    rows.push(row);
    let p99 = |o: &load::Outcome| load::percentile_ms(&o.latencies_us, 99.0);
    let ratio = if p99(&idle) > 0.0 {
        p99(&busy) / p99(&idle)
    } else {
        0.0
    };
    if !args.json {
        println!(
            "flood: {} of its requests shed (429/503); legitimate p99 {:.1} ms alone, {:.1} ms under the flood ({ratio:.2}x)",
            flooded.shed,
            p99(&idle),
            p99(&busy)
        );
    }
    rows
}

/// Peak resident set size of a process, in MiB (Linux: VmHWM).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let modes: Vec<Mode> = args
        .mode
        .split(',')
        .map(|m| match m.trim() {
            "accept" => Ok(Mode::Accept),
            "reject" => Ok(Mode::Reject),
            other => bail!("--mode: '{other}' is not accept or reject"),
        })
        .collect::<Result<_>>()?;
    let radius = match args.protocol.as_str() {
        "http" => false,
        "radius" => true,
        other => bail!("--protocol: '{other}' is not http or radius"),
    };
    if args.two_rounds && (!radius || args.pin) {
        bail!("--two-rounds needs --protocol radius and no --pin");
    }
    if args.compare_freeradius && !radius {
        bail!("--compare-freeradius needs --protocol radius");
    }
    if args.users == 0 || args.concurrency == 0 {
        bail!("--users and --concurrency must be at least 1");
    }
    if args.account_locking && modes.contains(&Mode::Reject) {
        bail!(
            "--account-locking measures the accept path only (--mode accept): rejects lock users"
        );
    }
    if args.flood
        && (radius || args.two_rounds || args.legit_rate.is_nan() || args.legit_rate <= 0.0)
    {
        bail!("--flood needs --protocol http and a --legit-rate above 0");
    }
    // The flood's legitimate logins type a PIN (the check that costs).
    let pin = args.pin || args.flood;
    let bin = match &args.tessera {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("tessera"),
    };
    let tmp = tempfile::tempdir()?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("data"));
    let url = if args.database == "sqlite" {
        format!("sqlite://{}", data.join("tessera.db").display())
    } else {
        args.database.clone()
    };
    let cost = HashCost {
        memory_kib: args.argon2_memory_kib,
        iterations: args.argon2_iterations,
        parallelism: 1,
    };
    let marker = data.join("bench-provisioned");
    let key = if marker.exists() {
        let text = std::fs::read_to_string(data.join("master.key"))?;
        tessera_store::MasterKey::parse(&text, "bench")?
            .to_base64()
            .to_string()
    } else {
        eprintln!(
            "provisioning {} users with TOTP tokens ({})…",
            args.users,
            if args.database == "sqlite" {
                "sqlite"
            } else {
                "postgres"
            }
        );
        let started = std::time::Instant::now();
        let plan = provision::Plan {
            users: args.users,
            pin,
            cost,
            user_cache_seconds: args.user_cache_seconds,
            two_rounds: args.two_rounds,
            keep_budgets: args.flood,
            account_locking: args.account_locking,
        };
        let key = provision::provision(&data, &url, &plan).await?;
        std::fs::write(
            &marker,
            format!(
                "{} users, pin {pin}, two rounds {}, flood {}, account locking {}\n",
                args.users, args.two_rounds, args.flood, args.account_locking
            ),
        )?;
        eprintln!("provisioned in {:.1} s", started.elapsed().as_secs_f64());
        key
    };
    let server = start_server(&bin, &data, &url, &key)?;
    let pid = server.child.id();
    let radius_addr = match (radius, server.radius) {
        (true, None) => bail!("the server did not report its RADIUS address"),
        (_, a) => a,
    };
    let mut results = Vec::new();
    if args.flood {
        results.extend(flood(&args, server.addr, cost).await);
    }
    for &mode in modes.iter().filter(|_| !args.flood) {
        eprintln!(
            "{} path: {} users, concurrency {}, {} s (+{} s warm-up){}{}",
            mode.as_str(),
            args.users,
            args.concurrency,
            args.duration,
            args.warmup,
            match (args.two_rounds, args.pin) {
                (true, _) => ", password then OTP (two rounds)",
                (false, true) => ", PIN+OTP",
                (false, false) => ", OTP only",
            },
            args.rate
                .map(|r| format!(", {r} requests/s"))
                .unwrap_or_default()
        );
        let spec = LoadSpec {
            addr: server.addr,
            mode,
            users: args.users,
            concurrency: args.concurrency,
            duration: Duration::from_secs(args.duration),
            warmup: Duration::from_secs(args.warmup),
            rate: args.rate,
            pin: args.pin,
            two_rounds: args.two_rounds,
            source: None,
            flood: false,
        };
        let out = match radius_addr.filter(|_| radius) {
            Some(addr) => radius_load::run(spec, radius_load::Target::Tessera, addr).await,
            None => load::run(spec).await,
        };
        let hashed = args.pin || args.two_rounds;
        let row = report(
            "tessera",
            mode,
            &out,
            serde_json::json!({
                "protocol": args.protocol,
                "backend": if args.database == "sqlite" { "sqlite" } else { "postgres" },
                "users": args.users,
                "concurrency": args.concurrency,
                "pin": args.pin,
                "two_rounds": args.two_rounds,
                "argon2": if hashed { format!("m={} KiB, t={}, p=1", cost.memory_kib, cost.iterations) } else { "-".into() },
                "exhausted": out.exhausted,
            }),
            args.json,
        );
        results.push(row);
    }
    let rss = peak_rss_mib(pid);
    drop(server);
    if args.compare_freeradius {
        let n = args
            .freeradius_users
            .unwrap_or(args.users.min(20_000))
            .max(1);
        eprintln!("starting FreeRADIUS 3 with {n} users in a users file (PAP)…");
        let fr = freeradius::FreeRadius::start(n, args.concurrency)?;
        for &mode in &modes {
            eprintln!(
                "FreeRADIUS {} path: {n} users, concurrency {}, {} s (+{} s warm-up), plain PAP",
                mode.as_str(),
                args.concurrency,
                args.duration,
                args.warmup
            );
            let spec = LoadSpec {
                addr: fr.addr,
                mode,
                users: n,
                concurrency: args.concurrency,
                duration: Duration::from_secs(args.duration),
                warmup: Duration::from_secs(args.warmup),
                rate: args.rate,
                pin: false,
                two_rounds: false,
                source: None,
                flood: false,
            };
            let out = radius_load::run(spec, radius_load::Target::FreeRadius, fr.addr).await;
            let row = report(
                "freeradius",
                mode,
                &out,
                serde_json::json!({"protocol": "radius", "users": n, "concurrency": args.concurrency}),
                args.json,
            );
            results.push(row);
        }
        let peak = peak_rss_mib(fr.pid());
        drop(fr);
        if !args.json
            && let Some(r) = peak
        {
            println!("FreeRADIUS peak RSS {r:.1} MiB");
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"results": results, "server_peak_rss_mib": rss})
            )?
        );
    } else if let Some(r) = rss {
        println!("server peak RSS {r:.1} MiB");
    }
    Ok(())
}
