#!/usr/bin/env python3
"""Flattens a pinhole policy into a CSV DuckDB can range-join against events:
sha256 (hex), protocol, family (4/6), first and last address of the prefix as decimal
integers, first and last port. Usage: policy_rules_csv.py POLICY.toml OUT.csv"""
import csv
import ipaddress
import sys
import tomllib

policy = tomllib.load(open(sys.argv[1], "rb"))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["sha", "protocol", "family", "net_lo", "net_hi", "port_lo", "port_hi"])
    for app in policy.get("app", []):
        for rule in app.get("allow", []):
            net = ipaddress.ip_network(rule["dst"])
            ports = str(rule["ports"])
            lo, _, hi = ports.partition("-")
            w.writerow([app["sha256"], rule["protocol"], net.version, int(net.network_address),
                        int(net.broadcast_address), int(lo), int(hi or lo)])
