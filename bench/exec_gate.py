#!/usr/bin/env python3
"""Exec latency under the enforcer's exec gate (issue "Hardening", finding 3).

Usage (root): exec_gate.py PINHOLE PROBE [N]
Measures fork+exec+exit of /bin/true N times (default 200) in four conditions, and
prints p50 and worst in milliseconds:
  none      no enforcer
  gate      enforcer with the gate, idle
  big-exec  the same while another process keeps exec'ing fresh 512 MiB files
            (a size no app has: answered at once)
  stopped   the enforcer stopped with SIGSTOP (its watchdog releases execs)
The enforcer is confined to a cgroup made here and removed after; whatever happens,
the stopped enforcer is continued within 10 s.
"""
import os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time

pinhole, probe = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
cg_root = next(l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup2 " in l)
tmp = tempfile.mkdtemp(prefix="pinhole-gate-bench-")
cg = os.path.join(cg_root, f"pinhole-bench-gate-{os.getpid()}")
os.mkdir(cg)


def measure():
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(["/bin/true"])
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def sha256(path):
    return subprocess.run([pinhole, "hash", path], capture_output=True, text=True, check=True).stdout.split()[0]


app = os.path.join(tmp, "probe")
shutil.copy(probe, app)
policy = os.path.join(tmp, "policy.toml")
with open(policy, "w") as f:
    f.write(f'version = 1\n[[app]]\nname = "probe"\nsha256 = "{sha256(app)}"\npaths = ["{app}"]\n')

results = {"none": measure()}
enf = subprocess.Popen([pinhole, "enforce", policy, "--cgroup", cg], stderr=subprocess.PIPE, text=True)
try:
    for line in enf.stderr:
        if " enforcing " in line:
            break
    threading.Thread(target=lambda: [None for _ in enf.stderr], daemon=True).start()
    time.sleep(0.5)
    results["gate"] = measure()

    stop_big = threading.Event()

    def big_execs():
        i = 0
        while not stop_big.is_set():
            path = os.path.join(tmp, f"big{i % 2}")
            shutil.copy("/bin/true", path)
            with open(path, "ab") as f:
                f.truncate(512 << 20)
            subprocess.run([path])
            os.unlink(path)
            i += 1

    t = threading.Thread(target=big_execs)
    t.start()
    time.sleep(1)
    results["big-exec"] = measure()
    stop_big.set()
    t.join()

    safety = threading.Timer(10, lambda: os.kill(enf.pid, signal.SIGCONT))
    safety.start()
    os.kill(enf.pid, signal.SIGSTOP)
    time.sleep(0.3)
    results["stopped"] = measure()
    os.kill(enf.pid, signal.SIGCONT)
    safety.cancel()
finally:
    enf.send_signal(signal.SIGINT)
    enf.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    os.rmdir(cg)

print("| condition | p50 ms | worst ms |")
print("|---|---|---|")
for k, (p50, worst) in results.items():
    print(f"| {k} | {p50:.2f} | {worst:.2f} |")
