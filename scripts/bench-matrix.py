#!/usr/bin/env python3
"""Runs tessera-bench over the matrix the foundation issue asks for and prints medians.

    cargo build --release -p tessera-server -p tessera-bench
    scripts/bench-matrix.py [--runs 3] [--postgres postgres://postgres@127.0.0.1:5432] [--skip-size]

Each run provisions fresh data (SQLite file, or a new PostgreSQL database) and measures the
accept and reject paths; the table shows the median of the runs for requests/s, p50 and p99.
The size comparison (1k vs 1M tokens) runs at a fixed low rate so that latency, not throughput,
is compared.
"""
import argparse, json, statistics, subprocess, sys, uuid, os

BENCH = os.path.join(os.path.dirname(__file__), "..", "target", "release", "tessera-bench")


def bench(args):
    out = subprocess.run([BENCH, "--json", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def pg_db(base):
    name = "tessera_bench_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", base + "/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    return name, f"{base}/{name}"


def drop_db(base, name):
    subprocess.run(["psql", base + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def median_row(results, mode):
    rows = [r for res in results for r in res["results"] if r["mode"] == mode]
    return {
        "rps": statistics.median(r["requests_per_second"] for r in rows),
        "p50": statistics.median(r["p50_ms"] for r in rows),
        "p99": statistics.median(r["p99_ms"] for r in rows),
        "bad": sum(r["unexpected_answers"] + r["errors"] for r in rows),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--postgres", default=None, help="server URL without database, e.g. postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--skip-size", action="store_true")
    ap.add_argument("--only", default="", help="comma list of backends to run: sqlite,postgres")
    ap.add_argument("--pin", default="both", choices=["both", "yes", "no"], help="token PIN rows to run")
    a = ap.parse_args()
    backends = ["sqlite"] + (["postgres"] if a.postgres else [])
    if a.only:
        backends = [b for b in backends if b in a.only.split(",")]
    print("| backend | PIN (Argon2id) | concurrency | path | requests/s | p50 ms | p99 ms | bad answers |")
    print("|---|---|---|---|---|---|---|---|")
    peak = []
    for backend in backends:
        for pin in {"both": [False, True], "yes": [True], "no": [False]}[a.pin]:
            for conc in [16, 64]:
                results = []
                for _ in range(a.runs):
                    # With a PIN every request costs one Argon2id check: a few hundred users suffice.
                    users = 2000 if pin else a.users
                    extra = ["--users", str(users), "--concurrency", str(conc), "--duration", str(a.duration)]
                    if pin:
                        extra += ["--pin"]
                    dbname = None
                    if backend == "postgres":
                        dbname, url = pg_db(a.postgres)
                        extra += ["--database", url]
                    try:
                        res = bench(extra)
                    finally:
                        if dbname:
                            drop_db(a.postgres, dbname)
                    results.append(res)
                    peak.append(res["server_peak_rss_mib"])
                for mode in ["accept", "reject"]:
                    m = median_row(results, mode)
                    cost = "m=19456 KiB, t=2, p=1" if pin else "none"
                    print(f"| {backend} | {cost} | {conc} | {mode} | {m['rps']:.0f} | {m['p50']:.2f} | {m['p99']:.2f} | {m['bad']} |", flush=True)
    print(f"\nserver peak RSS over these runs: median {statistics.median(peak):.1f} MiB, max {max(peak):.1f} MiB")
    if a.skip_size:
        return
    print("\n| tokens in store | path | rate | p50 ms (median of runs) | p99 ms |")
    print("|---|---|---|---|---|")
    for users in [1000, 1000000]:
        data = f"/tmp/tessera-bench-size-{users}"
        results = []
        for _ in range(a.runs):
            results.append(bench(["--users", str(users), "--data-dir", data, "--concurrency", "4",
                                  "--rate", "50", "--duration", "10", "--warmup", "2"]))
        for mode in ["accept", "reject"]:
            m = median_row(results, mode)
            print(f"| {users} | {mode} | 50/s | {m['p50']:.2f} | {m['p99']:.2f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
