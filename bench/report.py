"""The harness's Markdown report: one table per section, each number read against its
target (see BENCHMARKS.md)."""

LABELS = {
    "record": "pinhole record",
    "record_listening": "pinhole record, listening port (full handshake)",
    "enforce_10": "pinhole enforce, 10 rules",
    "enforce_1000": "pinhole enforce, 1,000 rules",
    "enforce_100000": "pinhole enforce, 100,000 rules",
    "enforce_100000_listening": "pinhole enforce, 100,000 rules, listening port",
    "iptables_1": "iptables owner rule x1",
    "iptables_1000": "iptables owner rules x1,000",
    "nftables_1": "nftables owner rule x1",
    "nftables_1000": "nftables owner rules x1,000",
    "opensnitch": "OpenSnitch daemon (default config)",
    "auditd": "auditd, rule on connect",
}


def markdown(a, r):
    out = [f"Date {r['date']}; machine: {r['machine']}; {'quick run' if r['quick'] else 'full run'}, {r.get('seconds', '?')} s.", ""]
    out += ["### Cost per connect (socket + connect + close on loopback, one core; closed port unless said)", ""]
    out += ["| configuration | connects/s (base -> with) | ratio: median (min-max) | pairs | p50 us | p99 us | target |", "|---|---|---|---|---|---|---|"]
    for key, label in LABELS.items():
        c = r["connect"].get(key)
        if c is None:
            continue
        if "skipped" in c:
            out.append(f"| {label} | not measured: {c['skipped']} | | | | | |")
            continue
        target = ""
        if key == "record" or key.startswith("enforce"):
            target = "met (<= 5 %)" if c["ratio_median"] >= 0.95 else f"MISSED by {0.95 - c['ratio_median']:.3f}"
        extra = f"; {c['log_bytes_per_connect']:,} bytes of audit log per connect" if "log_bytes_per_connect" in c else ""
        out.append(
            f"| {label} | {c['base_per_sec']:,} -> {c['with_per_sec']:,} | {c['ratio_median']:.3f} ({c['ratio_min']:.3f}-{c['ratio_max']:.3f}) "
            f"| {c['pairs']} | {c['p50_us'][0]} -> {c['p50_us'][1]} | {c['p99_us'][0]} -> {c['p99_us'][1]}{extra} | {target} |"
        )
    enf = [r["connect"].get(k, {}).get("ratio_median") for k in ("enforce_10", "enforce_1000", "enforce_100000")]
    enf = [x for x in enf if x is not None]
    if len(enf) >= 2:
        out += ["", f"Enforcer flatness: median ratios {' / '.join(f'{x:.3f}' for x in enf)} from 10 to 100,000 rules (spread {max(enf) - min(enf):.3f})."]
    if "recorder_loss" in r:
        out += recorder_loss(r)
    if "dataset" in r:
        out += dataset(r)
    if "analysis" in r:
        out += analysis(r)
    if "hashing" in r:
        h = r["hashing"]
        out += ["", "### Hashing", "", f"- A {h['mib']} MiB file: `pinhole hash` {h['pinhole_mib_per_s']:,} MiB/s, `sha256sum` {h['sha256sum_mib_per_s']:,} MiB/s (median of 3; same digest: {h['same_digest']})."]
    return "\n".join(out)


def recorder_loss(r):
    out = ["", "### Recorder loss (two load processes sharing both cores with the recorder)", ""]
    out += ["| ring | connects made | connects/s | recorded | counted lost | made = recorded + lost |", "|---|---|---|---|---|---|"]
    for label, x in r["recorder_loss"].items():
        out.append(f"| {label} | {x['made']:,} | {x['per_sec']:,} | {x['recorded']:,} | {x['lost']:,} | {'yes' if x['reconciled'] else 'NO'} |")
    return out


def dataset(r):
    d = r["dataset"]
    out = ["", "### Dataset cost", ""]
    out += [
        f"- Mixed workload (5 binaries, TCP/UDP, IPv4/IPv6, short-lived processes): {d['mixed_events']:,} events in {d['mixed_bytes']:,} bytes = **{d['bytes_per_event']} bytes/event** (target < 10: {'met' if d['bytes_per_event'] < 10 else 'MISSED'}).",
        f"- Write throughput through the sink (pinhole-synth, {d['write_events']:,} events): {d['write_events_per_sec']:,} events/s, {d['write_bytes_per_event']} bytes/event.",
    ]
    return out


def analysis(r):
    an = r["analysis"]
    out = ["", f"### Analysis: {an['events']:,} events, {an['dataset_mib']} MiB (2 threads each)", ""]
    out += ["| task | pinhole (s) | DuckDB, same answer in SQL (s) | ratio | pinhole peak MiB | DuckDB peak MiB |", "|---|---|---|---|---|---|"]
    for task, ours, theirs in [("profile (analyze)", "analyze", "duckdb_profile"), ("replay (policy replay)", "replay", "duckdb_replay")]:
        for o, t in zip(an["runs"][ours], an["runs"][theirs]):
            out.append(f"| {task} | {o['seconds']:.2f} | {t['seconds']:.2f} | {o['seconds'] / t['seconds']:.2f} | {o['peak_mib']} | {t['peak_mib']} |")
    ag = an["replay_agreement"]
    out += ["", f"Replay answers: pinhole {ag['pinhole']}, DuckDB {ag['duckdb']} ({'identical' if ag['pinhole'] == ag['duckdb'] else 'DIFFERENT'})."]
    return out
