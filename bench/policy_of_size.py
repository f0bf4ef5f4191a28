#!/usr/bin/env python3
"""Writes a policy with RULES allow rules spread over APPS apps (pinhole policy format).

App 1 is the benchmark's load generator (SHA256, PATH); one of its rules allows the
destination it hammers (tcp 127.0.0.1 port PORT), the rest are random IPv4 and IPv6
hosts, prefixes and port ranges, so the kernel's trie holds RULES real entries.
Usage: policy_of_size.py RULES APPS SHA256 PATH PORT > policy.toml
"""
import random
import sys

rules, apps, sha, path, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
rng = random.Random(rules)
per_app = rules // apps
print('version = 1\n[defaults]\nunknown_binary = "allow"\n')
for a in range(apps):
    digest = sha if a == 0 else "%064x" % rng.getrandbits(256)
    print(f'[[app]]\nname = "app{a}"\nsha256 = "{digest}"')
    if a == 0:
        print(f'paths = ["{path}"]')
    print('mode = "enforce"\n')
    seen = set()
    for r in range(per_app):
        if a == 0 and r == per_app // 2:
            dst, ports, proto = "127.0.0.1", str(port), "tcp"
        elif a == 0 and r == per_app // 2 + 1:
            dst, ports, proto = "127.0.0.1", "39999", "tcp"  # the harness's listening port
        elif r % 4 == 3:
            dst = "2001:db8:%x:%x::%x/%d" % (rng.getrandbits(16), rng.getrandbits(16), r, 128)
            ports, proto = str(rng.randint(1, 65535)), "tcp"
        else:
            # Host rules in 10/8 and /24 rules in 11/8, each destination once per
            # protocol and app: no rule shadows another (check refuses those).
            while True:
                plen = rng.choice([32, 32, 32, 24])
                o = [10 if plen == 32 else 11, rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)]
                if plen == 24:
                    o[3] = 0
                dst = "%d.%d.%d.%d/%d" % (*o, plen)
                proto = rng.choice(["tcp", "udp"])
                if (proto, dst) not in seen:
                    seen.add((proto, dst))
                    break
            lo = rng.randint(1, 60000)
            ports = str(lo) if r % 3 else "%d-%d" % (lo, lo + rng.randint(1, 500))
        print(f'[[app.allow]]\nid = "a{a}-r{r}"\nprotocol = "{proto}"\ndst = "{dst}"\nports = "{ports}"\n')
