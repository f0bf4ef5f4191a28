#!/usr/bin/env python3
"""pinhole's benchmark harness: every number in BENCHMARKS.md, measured side by side with
what users would otherwise run, in one command (as root, from bench/run.sh).

Sections: connect cost (no BPF, pinhole record, pinhole enforce with 10 / 1,000 / 100,000
rules, iptables and nftables owner rules, OpenSnitch, auditd last), recorder loss,
dataset cost, analysis against DuckDB, hashing against sha256sum. Each configuration is
measured as tightly alternated pairs against its own baseline; medians and spreads are
reported. Prints a Markdown report; --json FILE writes the same numbers for machines.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REL = ROOT / "target" / "release"
PH, LG = REL / "pinhole", REL / "pinhole-loadgen"
CLOSED_PORT = 9
LISTEN_PORT = 39999  # the load generator listens there itself (--listen)


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cgroup_root():
    for line in open("/proc/self/mountinfo"):
        pre, _, post = line.partition(" - ")
        if post.split()[0] == "cgroup2":
            return Path(pre.split()[4])
    sys.exit("no cgroup-v2 mount")


class Cgroups:
    """Two sibling cgroups: programs attach to `test`; `base` has none."""

    def __init__(self):
        root = cgroup_root()
        self.test = root / f"pinhole-bench-{os.getpid()}"
        self.base = root / f"pinhole-base-{os.getpid()}"
        self.test.mkdir()
        self.base.mkdir()

    def remove(self):
        for d in (self.test, self.base):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                left = (d / "cgroup.procs").read_text().split()
                log(f"could not remove {d}: processes {left} still in it")


def load(cgroup, secs, procs=1, port=CLOSED_PORT, core="1", count=None, listen=False):
    """Connects from `procs` processes in `cgroup`; the load generator's JSON result."""
    args = [str(LG), "--port", str(port), "--procs", str(procs)] + (["--listen"] if listen else [])
    args += ["--count", str(count)] if count else ["--duration", f"{secs}s"]
    pin = ["taskset", "-c", core] if core else []
    script = 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"'
    out = sh(["sh", "-c", script, "sh", str(cgroup), *pin, *args]).stdout
    return json.loads(out.strip().splitlines()[-1])


class Daemon:
    """A background pinhole (or other) process that reports readiness on stderr."""

    def __init__(self, args, ready, logfile, cpu="0"):
        self.logfile = logfile
        f = open(logfile, "w")
        self.p = subprocess.Popen(["taskset", "-c", cpu, *map(str, args)], stdout=f, stderr=f)
        deadline = time.time() + 60
        while ready and ready not in Path(logfile).read_text():
            if self.p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{args[0]} did not start: {Path(logfile).read_text()[-2000:]}")
            time.sleep(0.1)

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGINT):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return Path(self.logfile).read_text()


def pairs(n, secs, base_cg, test_cg, enable=None, disable=None, listen=False):
    """n alternated (baseline, configuration) runs; enable/disable switch a host-wide tool."""
    rows = []
    port = LISTEN_PORT if listen else CLOSED_PORT
    for _ in range(n):
        if disable:
            disable()
        b = load(base_cg, secs, port=port, listen=listen)
        if enable:
            enable()
        w = load(test_cg, secs, port=port, listen=listen)
        rows.append((b, w))
    if disable:
        disable()
    ratios = [w["per_sec"] / b["per_sec"] for b, w in rows]
    med = lambda xs: statistics.median(xs)
    return {
        "pairs": n,
        "with_connects": sum(w["connects"] for _, w in rows),
        "base_per_sec": round(med([b["per_sec"] for b, _ in rows])),
        "with_per_sec": round(med([w["per_sec"] for _, w in rows])),
        "ratio_median": round(med(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "p50_us": [round(med([b["p50_ns"] for b, _ in rows]) / 1000, 1), round(med([w["p50_ns"] for _, w in rows]) / 1000, 1)],
        "p99_us": [round(med([b["p99_ns"] for b, _ in rows]) / 1000, 1), round(med([w["p99_ns"] for _, w in rows]) / 1000, 1)],
    }


# ---------------------------------------------------------------- peers


def apt_install(pkgs):
    missing = [p for p in pkgs if sh(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout != "install ok installed"]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
        # policy-rc.d keeps packages from starting their daemons: the harness starts them.
        rc = Path("/usr/sbin/policy-rc.d")
        had_rc = rc.exists()
        if not had_rc:
            rc.write_text("#!/bin/sh\nexit 101\n")
            rc.chmod(0o755)
        try:
            r = sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env)
            if r.returncode != 0:
                sh(["apt-get", "update", "-qq"], check=False, env=env)
                r = sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=False, env=env)
        finally:
            if not had_rc:
                rc.unlink()
        if r.returncode != 0:
            return None, f"apt-get install {' '.join(missing)} failed: {plain(r.stderr)[-300:]}"
    return missing, None


def plain(text):
    """Log text without colour codes, on one line."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())


def apt_purge(pkgs):
    if pkgs:
        sh(["apt-get", "purge", "-y", "-qq", *pkgs], check=False, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def iptables_rules(n):
    """n owner-match rules (other users' destinations): every packet traverses them all."""
    lines = ["*filter", ":OUTPUT ACCEPT [0:0]", ":PINHOLE_BENCH - [0:0]", "-A OUTPUT -j PINHOLE_BENCH"]
    for i in range(n):
        lines.append(f"-A PINHOLE_BENCH -m owner --uid-owner {60000 + i} -p tcp -d 10.{i // 256 % 256}.{i % 256}.1 --dport 443 -j ACCEPT")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nft_rules(n):
    rules = "\n".join(
        f"    meta skuid {60000 + i} ip daddr 10.{i // 256 % 256}.{i % 256}.1 tcp dport 443 accept" for i in range(n)
    )
    return f"table inet pinhole_bench {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{rules}\n  }}\n}}\n"


def iptables_on(text):
    def on():
        sh(["iptables-restore", "--noflush"], input=text)
    return on


def iptables_off():
    if not shutil.which("iptables"):
        return
    sh(["iptables", "-D", "OUTPUT", "-j", "PINHOLE_BENCH"], check=False)
    sh(["iptables", "-F", "PINHOLE_BENCH"], check=False)
    sh(["iptables", "-X", "PINHOLE_BENCH"], check=False)


def nft_on(text):
    def on():
        sh(["nft", "-f", "-"], input=text)
    return on


def nft_off():
    if not shutil.which("nft"):
        return
    sh(["nft", "delete", "table", "inet", "pinhole_bench"], check=False)


# ---------------------------------------------------------------- sections


def connect_cost(a, cg, work, results):
    log("connect cost: pinhole record")
    n, secs = a.pairs, a.secs
    rec = Daemon([PH, "record", "--out", work / "rec", "--cgroup", cg.test], "attached; recording", work / "rec.log")
    results["record"] = pairs(n, secs, cg.base, cg.test)
    results["record_listening"] = pairs(n, secs, cg.base, cg.test, listen=True)
    rec.stop()
    shutil.copy(LG, work / "loadgen")
    sha = sh(["sha256sum", str(LG)]).stdout.split()[0]
    for rules, apps in [(10, 1), (1000, 10), (100000, 100)]:
        if a.quick and rules == 1000:
            continue
        log(f"connect cost: pinhole enforce, {rules} rules")
        policy = work / f"p{rules}.toml"
        policy.write_text(sh(["python3", str(ROOT / "bench/policy_of_size.py"), str(rules), str(apps), sha, str(LG), str(CLOSED_PORT)]).stdout)
        enf = Daemon([PH, "enforce", policy, "--cgroup", cg.test, "--attach-cgroup", cg.test], " enforcing ", work / "enf.log")
        results[f"enforce_{rules}"] = pairs(n, secs, cg.base, cg.test)
        if rules == 100000:
            results["enforce_100000_listening"] = pairs(n, secs, cg.base, cg.test, listen=True)
        enf.stop()
    # Host-wide tools: the baseline is the same cgroup with the tool switched off.
    missing, err = apt_install(["iptables", "nftables"])
    if err:
        results["iptables_1"] = results["nftables_1"] = {"skipped": err}
    else:
        for rules in ([1, 1000] if not a.quick else [1]):
            log(f"connect cost: iptables owner rules x{rules}")
            results[f"iptables_{rules}"] = pairs(n, secs, cg.base, cg.base, iptables_on(iptables_rules(rules)), iptables_off)
            log(f"connect cost: nftables owner rules x{rules}")
            results[f"nftables_{rules}"] = pairs(n, secs, cg.base, cg.base, nft_on(nft_rules(rules)), nft_off)
    opensnitch(a, cg, work, results)
    apt_purge(missing or [])


def opensnitch(a, cg, work, results):
    if a.quick:
        results["opensnitch"] = {"skipped": "not in --quick"}
        return
    # Its default configuration drives iptables (NFQUEUE), which it only recommends.
    installed, err = apt_install(["opensnitch", "iptables"])
    if err:
        results["opensnitch"] = {"skipped": err}
        return
    daemon = shutil.which("opensnitchd") or "/usr/bin/opensnitchd"
    rules_dir = Path("/etc/opensnitchd/rules")  # the package ships none; the daemon needs it
    made_rules_dir = not rules_dir.exists()
    rules_dir.mkdir(parents=True, exist_ok=True)
    state = {}

    def on():
        state["d"] = Daemon([daemon, "-rules-path", "/etc/opensnitchd/rules"], None, work / "snitch.log", cpu="0")
        time.sleep(3)  # it installs its NFQUEUE rules after start-up

    def off():
        if "d" in state:
            state.pop("d").stop(signal.SIGTERM)
            time.sleep(1)

    log("connect cost: OpenSnitch daemon (default configuration)")
    try:
        on()
        alive = state["d"].p.poll() is None
        off()
        if not alive:
            results["opensnitch"] = {"skipped": "opensnitchd exited at start: " + plain((work / "snitch.log").read_text())[-300:]}
        else:
            results["opensnitch"] = pairs(3, a.secs, cg.base, cg.base, on, off)
    finally:
        off()
        if shutil.which("iptables"):  # what the daemon may leave: its NFQUEUE rules
            sh(["iptables", "-t", "mangle", "-F"], check=False)
            sh(["iptables", "-F"], check=False)
        if shutil.which("nft"):
            sh(["nft", "delete", "table", "inet", "opensnitch"], check=False)
        apt_purge(installed)
        if made_rules_dir:
            shutil.rmtree(rules_dir.parent, ignore_errors=True)


def auditd(a, cg, work, results):
    """Last: once the kernel audits, new processes carry an audit context until reboot."""
    if a.quick or a.no_audit:
        results["auditd"] = {"skipped": "not in --quick" if a.quick else "--no-audit"}
        return
    installed, err = apt_install(["auditd"])
    if err:
        results["auditd"] = {"skipped": err}
        return
    log("connect cost: auditd with a rule on connect (last)")
    Path("/var/log/audit").mkdir(parents=True, exist_ok=True)
    sh(["/usr/sbin/auditd"])  # daemonizes; in the foreground (-f) it would log to stderr
    time.sleep(1)
    rule = ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-k", "pinhole_bench"]
    try:
        results["auditd"] = pairs(
            a.pairs, a.secs, cg.base, cg.base,
            lambda: sh(["auditctl", *rule]),
            lambda: sh(["auditctl", "-d", *rule[1:]], check=False),
        )
        # Bytes written per connect: a fresh log (SIGUSR1 rotates), 5,000 audited connects.
        pid = int(Path("/var/run/auditd.pid").read_text().split()[0])
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1)
        logf = Path("/var/log/audit/audit.log")
        before = logf.stat().st_size
        sh(["auditctl", *rule])
        load(cg.base, 0, count=5000)
        sh(["auditctl", "-d", *rule[1:]], check=False)
        time.sleep(1)
        results["auditd"]["log_bytes_per_connect"] = round((logf.stat().st_size - before) / 5000)
    finally:
        sh(["auditctl", "-D"], check=False)
        sh(["auditctl", "-e", "0"], check=False)
        pidfile = Path("/var/run/auditd.pid")
        if pidfile.exists():
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
            time.sleep(1)
        apt_purge(installed)
        shutil.rmtree("/var/log/audit", ignore_errors=True)


def recorder_loss(a, cg, work, results):
    """Zero loss at the highest rate two load processes reach, then forced overflow."""
    out = {}
    secs = 3 if a.quick else 8
    for label, extra in [("default ring (8 MiB, 5 ms drain)", []), ("64 KiB ring, 200 ms drain (forced overflow)", ["--ring-size", "64KiB", "--poll-interval", "200ms"])]:
        log(f"recorder loss: {label}")
        d = work / f"loss-{len(out)}"
        rec = Daemon([PH, "record", "--out", d, "--cgroup", cg.test, *extra], "attached; recording", work / "loss.log")
        made = load(cg.test, secs, procs=2, core=None)
        text = rec.stop()
        m = re.findall(r"events=(\d+) lost=(\d+)", text)
        recorded, lost = map(int, m[-1]) if m else (0, 0)
        out[label] = {
            "made": made["connects"], "per_sec": round(made["per_sec"]), "recorded": recorded, "lost": lost,
            "reconciled": made["connects"] == recorded + lost,
        }
    results["recorder_loss"] = out


def dataset_cost(a, cg, work, results):
    log("dataset cost: mixed workload, and write throughput")
    d = work / "mix"
    rec = Daemon([PH, "record", "--out", d, "--cgroup", cg.test], "attached; recording", work / "mix.log")
    secs = 3 if a.quick else 8
    apps = []
    for i in range(1, 6):
        shutil.copy(LG, work / f"app{i}")
    specs = [
        ["--addr", "127.0.0.1", "--port", "443", "--interval", "2ms"],
        ["--addr", "::1", "--port", "53", "--mode", "sendto", "--interval", "1ms"],
        ["--addr", "127.0.0.2", "--port", "8000-8999", "--interval", "3ms"],
        ["--addr", "::1", "--port", "5432", "--mode", "udp", "--interval", "5ms"],
    ]
    script = 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"'
    for i, spec in enumerate(specs, 1):
        apps.append(subprocess.Popen(["sh", "-c", script, "sh", str(cg.test), str(work / f"app{i}"), *spec, "--duration", f"{secs}s"], stdout=subprocess.DEVNULL))
    end = time.time() + secs
    while time.time() < end:  # short-lived processes
        sh(["sh", "-c", script, "sh", str(cg.test), str(work / "app5"), "--addr", "127.0.0.3", "--port", "80-90", "--count", "3"])
        time.sleep(0.01)
    for p in apps:
        p.wait()
    text = rec.stop()
    events = int(re.findall(r"events=(\d+)", text)[-1])
    size = sum(f.stat().st_size for f in d.rglob("*.parquet"))
    n = 2_000_000 if a.quick else 10_000_000
    t0 = time.time()
    sh([str(REL / "pinhole-synth"), "--out", str(work / "synth-write"), "--events", str(n)])
    dt = time.time() - t0
    results["dataset"] = {
        "mixed_events": events, "mixed_bytes": size, "bytes_per_event": round(size / events, 2),
        "write_events": n, "write_seconds": round(dt, 2), "write_events_per_sec": round(n / dt),
        "write_bytes_per_event": round(sum(f.stat().st_size for f in (work / "synth-write").rglob("*.parquet")) / n, 2),
    }
    shutil.rmtree(work / "synth-write")


def timed(cmd):
    """Seconds and peak RSS (MiB) of a command."""
    r = sh(["/usr/bin/time", "-f", "%e %M", *map(str, cmd)])
    sec, kib = r.stderr.strip().splitlines()[-1].split()
    return float(sec), round(int(kib) / 1024)


def analysis(a, work, results):
    py = os.environ.get("PINHOLE_TEST_PYTHON", str(ROOT / "target/test-venv/bin/python"))
    events = 2_000_000 if a.quick else 20_000_000
    data = ROOT / "target/bench-data" / f"synth-{events}"
    if not data.exists():
        log(f"analysis: writing a {events:,}-event synthetic dataset")
        sh([str(REL / "pinhole-synth"), "--out", str(data), "--events", str(events), "--apps", "300", "--destinations", "30000", "--days", "5"])
    split = "2026-11-26"
    policy = work / "replay-policy.toml"
    sh([str(PH), "policy", "generate", str(data), "--until", split, "-o", str(policy)])
    rules_csv = work / "rules.csv"
    sh([py, str(ROOT / "bench/policy_rules_csv.py"), str(policy), str(rules_csv)])
    profile_sql = (ROOT / "analyze/tests/py/duckdb_profile.sql").read_text().replace("${DATASET}", str(data))
    replay_sql = (ROOT / "bench/duckdb_replay.sql").read_text().replace("${DATASET}", str(data)).replace("${RULES}", str(rules_csv)).replace("${SINCE}", split)
    duck = [py, "-c", "import duckdb,sys; c=duckdb.connect(); c.execute('SET threads = 2'); c.execute('SET enable_progress_bar = false'); c.execute(sys.argv[1]).fetchall()"]
    rounds = 1 if a.quick else 3
    rows = {"analyze": [], "duckdb_profile": [], "replay": [], "duckdb_replay": []}
    for r in range(rounds):
        log(f"analysis: round {r + 1} of {rounds}")
        rows["analyze"].append(timed([PH, "analyze", data, "--threads", "2", "--format", "json", "-o", "/dev/null"]))
        rows["duckdb_profile"].append(timed([*duck, profile_sql]))
        rows["replay"].append(timed([PH, "policy", "replay", policy, data, "--since", split]))
        rows["duckdb_replay"].append(timed([*duck, replay_sql]))
    # The two replays must agree before their times mean anything.
    ours = sh([str(PH), "policy", "replay", str(policy), str(data), "--since", split]).stdout
    theirs = sh([*duck[:2], "import duckdb,sys; c=duckdb.connect(); print(c.execute(sys.argv[1]).fetchall())", replay_sql]).stdout
    results["analysis"] = {
        "events": events,
        "dataset_mib": round(sum(f.stat().st_size for f in data.rglob("*.parquet")) / 2**20),
        "runs": {k: [{"seconds": s, "peak_mib": m} for s, m in v] for k, v in rows.items()},
        "replay_agreement": agreement(ours, theirs),
    }


def agreement(ours_text, duck_rows):
    """Events and would-deny events according to pinhole replay and to the SQL."""
    m = re.search(r"(\d+) events in \d+ files: (\d+) would be denied", ours_text)
    nums = [int(x) for x in re.findall(r"\d+", duck_rows)]
    return {
        "pinhole": {"events": int(m.group(1)), "denied": int(m.group(2))} if m else None,
        "duckdb": {"events": nums[-2], "denied": nums[-1]} if len(nums) >= 2 else None,
    }


def hashing(a, work, results):
    size = 256 if a.quick else 1024
    log(f"hashing: a {size} MiB file, pinhole hash against sha256sum")
    f = work / "big.bin"
    with open(f, "wb") as out:
        for _ in range(size):
            out.write(os.urandom(1 << 20))
    runs = {"pinhole": [], "sha256sum": []}
    for _ in range(3):
        runs["pinhole"].append(timed([PH, "hash", f])[0])
        runs["sha256sum"].append(timed(["sha256sum", f])[0])
    a1 = sh([str(PH), "hash", str(f)]).stdout.split()[0]
    a2 = sh(["sha256sum", str(f)]).stdout.split()[0]
    f.unlink()
    med = {k: statistics.median(v) for k, v in runs.items()}
    results["hashing"] = {
        "mib": size, "same_digest": a1 == a2,
        "pinhole_mib_per_s": round(size / med["pinhole"]), "sha256sum_mib_per_s": round(size / med["sha256sum"]),
        "runs": runs,
    }


# ---------------------------------------------------------------- report


def report(a, results):
    from report import markdown  # bench/report.py
    return markdown(a, results)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: fewer pairs, smaller data, no peers that take long")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--no-audit", action="store_true", help="skip auditd (it changes the machine until reboot)")
    ap.add_argument("--only", default="connect,loss,dataset,analysis,hashing,audit",
                    help="comma-separated sections to run (default: all)")
    a = ap.parse_args()
    a.pairs, a.secs = (3, 1) if a.quick else (9, 1)
    if os.geteuid() != 0:
        sys.exit("bench/run.sh must run as root (it loads BPF programs and installs peers)")
    results = {"date": time.strftime("%Y-%m-%d"), "quick": a.quick, "machine": machine()}
    work = Path(tempfile.mkdtemp(prefix="pinhole-bench-"))
    cg = Cgroups()
    started = time.time()
    try:
        only = set(a.only.split(","))
        connect = results.setdefault("connect", {})
        if "connect" in only:
            connect_cost(a, cg, work, connect)
        elif "opensnitch" in only:
            opensnitch(a, cg, work, connect)
        if "loss" in only:
            recorder_loss(a, cg, work, results)
        if "dataset" in only:
            dataset_cost(a, cg, work, results)
        if "analysis" in only:
            analysis(a, work, results)
        if "hashing" in only:
            hashing(a, work, results)
        if "audit" in only:
            auditd(a, cg, work, connect)
    finally:
        # Each clean-up runs even if another fails: no rule or cgroup may outlive the run.
        for cleanup in (iptables_off, nft_off, cg.remove):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - report and go on cleaning
                log(f"clean-up {cleanup.__name__} failed: {e}")
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.time() - started)
    sys.path.insert(0, str(ROOT / "bench"))
    print(report(a, results))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, kernel {os.uname().release}"


if __name__ == "__main__":
    main()
