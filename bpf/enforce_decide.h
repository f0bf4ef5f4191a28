/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The enforcer's decision: which app a task is (by the hashed identity of its
 * executable), and whether that app may reach a destination. This is the kernel side
 * of policygen/src/matcher.rs and depends on no hook context, so any hook (the cgroup
 * sock_addr hooks here, lsm/socket_connect where BPF-LSM loads) can include it.
 */
#ifndef PINHOLE_ENFORCE_DECIDE_H
#define PINHOLE_ENFORCE_DECIDE_H

#include "current_cgroup.h"
#include "pinhole.h"
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>

/* Set before load; a reload loads a new program with new values. */
const volatile __u32 unknown_action = PINHOLE_UNKNOWN_ALLOW;
const volatile __u8 force_audit = 0; /* --mode audit: never deny, record would-deny */

/* Sizes are set by user space before load (identities: --identity-capacity). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct identity_key);
	__type(value, struct identity_value);
} identities SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct dest_key);
	__type(value, struct span_range);
} dests SEC(".maps");

/*
 * Nodes of whole addresses (/32, /128), by hash: most rules of a learned policy name
 * one address, and a trie insert costs the kernel a microsecond each (a million-rule
 * policy filled in 1.3 s), a hash insert a fraction. A node carries the rules of its
 * enclosing prefixes too, so a hit here is the longest match.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct dest_key);
	__type(value, struct span_range);
} dest_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_span);
} port_spans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct app_info);
} apps SEC(".maps");

/* Chains of rules behind scoped ones (port_span.chain), and the scopes, by rule. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rule_chains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule_scope);
} rule_scopes SEC(".maps");

/*
 * Who a connect is decided for, as scopes ask: uid and gid as bpf_get_current_uid_gid
 * packs them, and 0 for the current task's cgroups, or the cgroup of the process a
 * kernel worker's MPTCP subflow belongs to (then only that cgroup itself is known).
 */
struct subject {
	__u64 uid_gid;
	__u64 owner_cgroup;
};

struct decision {
	__u32 app_id;
	__u32 rule;
	__u32 name_id; /* the name whose rule allowed it */
	__u8 verdict; /* enum pinhole_verdict */
	__u8 identity_unknown; /* no hash on record for this executable version */
};

/* The app whose hash this executable had when it was hashed; 0 if none or changed since. */
static __always_inline __u32 identify(const struct exe_identity *id, __u8 *unknown)
{
	struct identity_key key = { .ino = id->ino, .dev = id->dev };
	struct identity_value *v = bpf_map_lookup_elem(&identities, &key);

	/* A changed ctime means the bytes may have changed: not that app until rehashed. */
	if (!v || v->ctime_sec != id->ctime_sec || v->ctime_nsec != id->ctime_nsec) {
		*unknown = 1;
		return 0;
	}
	return v->app_id;
}

static __always_inline int id_listed(const __u32 *ids, __u8 n, __u32 id)
{
	for (int i = 0; i < PINHOLE_SCOPE_IDS; i++) {
		if (i >= n)
			return 0;
		if (ids[i] == id)
			return 1;
	}
	return 0;
}

/*
 * Whether rule `rule`'s scope holds for the subject now (an unscoped rule: always).
 * Inlined in walk_chain: each global function adds a frame to the deepest call chain
 * (connect hook, judge_name, rule_in_spans, walk_chain), whose combined stack 6.1's
 * verifier bounds to 512 bytes.
 */
static __always_inline int scope_holds(__u32 rule, __u64 uid_gid, __u64 owner_cgroup)
{
	struct rule_scope *s = bpf_map_lookup_elem(&rule_scopes, &rule);

	if (!s)
		return 1;
	if (s->expires_ns && bpf_ktime_get_boot_ns() >= s->expires_ns)
		return 0;
	if (s->nuids && !id_listed(s->uids, s->nuids, (__u32)uid_gid))
		return 0;
	if (s->ngids && !id_listed(s->gids, s->ngids, (__u32)(uid_gid >> 32)))
		return 0;
	if (!s->has_cgroup)
		return 1;
	if (!s->cgroup_id)
		return 0;
	if (owner_cgroup)
		return owner_cgroup == s->cgroup_id;
	return current_ancestor_cgroup_id(s->cgroup_level) == s->cgroup_id;
}

/*
 * The first rule of chain `chain` (see port_span) whose scope holds, 0 if none.
 * Global functions here and below: verified once, apart from the caller's search.
 */
__noinline __u32 walk_chain(__u32 chain, __u64 uid_gid, __u64 owner_cgroup)
{
	for (__u32 i = 0; i < PINHOLE_MAX_CHAIN; i++) {
		__u32 idx = chain - 1 + i;
		__u32 *rule = bpf_map_lookup_elem(&rule_chains, &idx);

		if (!rule || !*rule)
			return 0;
		if (scope_holds(*rule, uid_gid, owner_cgroup))
			return *rule;
	}
	return 0;
}

/*
 * The rule allowing `port` among sorted, disjoint port_spans[start .. start + count)
 * for the subject (see struct subject). A global function: verified once, not once
 * per caller (name rules call it per name).
 */
__noinline __u32 rule_in_spans(__u32 start, __u32 count, __u16 port, __u64 uid_gid,
			       __u64 owner_cgroup)
{
	__u32 lo = 0, hi = count, i;
	struct port_span *span;

	/* Find the last span starting at or below the port. */
	for (i = 0; i < PINHOLE_MAX_SEARCH_STEPS && lo < hi; i++) {
		__u32 mid = (lo + hi) / 2;
		__u32 idx = start + mid;

		span = bpf_map_lookup_elem(&port_spans, &idx);
		if (!span)
			return 0;
		if (span->lo <= port)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return 0;
	i = start + lo - 1;
	span = bpf_map_lookup_elem(&port_spans, &i);
	if (!span || port > span->hi)
		return 0;
	return span->chain ? walk_chain(span->chain, uid_gid, owner_cgroup) : span->rule;
}

/* The rule allowing `port` under the longest matching prefix node, 0 if none. */
static __always_inline __u32 find_rule(__u32 app_id, __u8 protocol, __u8 family,
				       const __u32 addr[4], __u16 port, const struct subject *who)
{
	struct dest_key key = {
		.prefixlen = PINHOLE_DEST_FIXED_BITS + (family == PINHOLE_FAMILY_V4 ? 32 : 128),
		.app_id = app_id,
		.protocol = protocol,
		.family = family,
	};
	struct span_range *range;

	__builtin_memcpy(key.addr, addr, 16);
	range = bpf_map_lookup_elem(&dest_hosts, &key);
	if (!range)
		range = bpf_map_lookup_elem(&dests, &key);
	return range ? rule_in_spans(range->start, range->count, port, who->uid_gid,
				     who->owner_cgroup) :
		       0;
}

#include "name_decide.h"

/* ICMPv6 is matched as ICMP; protocols no rule can name never match (returns 0). */
static __always_inline __u8 protocol_class(__u8 ipproto)
{
	switch (ipproto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
		return ipproto;
	case IPPROTO_ICMPV6:
		return IPPROTO_ICMP;
	default:
		return 0;
	}
}

static __always_inline __u8 unknown_verdict(void)
{
	if (unknown_action == PINHOLE_UNKNOWN_DENY)
		return PINHOLE_VERDICT_DENIED;
	if (unknown_action == PINHOLE_UNKNOWN_AUDIT)
		return PINHOLE_VERDICT_WOULD_DENY;
	return PINHOLE_VERDICT_ALLOWED;
}

/* What an app gets when no rule allows it: denied, or would-deny in audit mode. */
static __always_inline __u8 no_rule_verdict(__u32 app_id)
{
	struct app_info *app = bpf_map_lookup_elem(&apps, &app_id);

	return app && app->mode == PINHOLE_MODE_AUDIT ? PINHOLE_VERDICT_WOULD_DENY :
							 PINHOLE_VERDICT_DENIED;
}

/* --mode audit turns every denial into a would-deny. */
static __always_inline void apply_force_audit(struct decision *d)
{
	if (force_audit && d->verdict == PINHOLE_VERDICT_DENIED)
		d->verdict = PINHOLE_VERDICT_WOULD_DENY;
}

/*
 * The verdict for a connect or send to addr:port (network-order words; IPv4 in addr[0],
 * IPv4-mapped IPv6 already folded to IPv4 by the caller).
 */
static __always_inline void decide_connect(const struct exe_identity *id, const struct subject *who,
					   __u8 ipproto, __u8 family, const __u32 addr[4], __u16 port,
					   struct decision *d)
{
	__u8 protocol = protocol_class(ipproto);
	struct names_verdict n = { .uid_gid = who->uid_gid, .owner_cgroup = who->owner_cgroup };

	d->app_id = identify(id, &d->identity_unknown);
	d->rule = 0;
	d->name_id = 0;
	if (names_enabled)
		decide_by_names(id, d->app_id, protocol, family, addr, port, &n);
	if (n.v.deny) {
		/* A deny entry wins over every allow (matcher item 8). */
		d->rule = n.v.deny;
		if (d->app_id)
			d->verdict = no_rule_verdict(d->app_id);
		else
			d->verdict = unknown_action == PINHOLE_UNKNOWN_AUDIT ? PINHOLE_VERDICT_WOULD_DENY :
									      PINHOLE_VERDICT_DENIED;
	} else if (!d->app_id) {
		d->verdict = unknown_verdict();
	} else if (protocol && n.v.rule) {
		d->verdict = PINHOLE_VERDICT_ALLOWED;
		d->rule = n.v.rule;
		d->name_id = n.v.name_id;
	} else if (protocol && (d->rule = find_rule(d->app_id, protocol, family, addr, port, who))) {
		d->verdict = PINHOLE_VERDICT_ALLOWED;
	} else {
		d->verdict = no_rule_verdict(d->app_id);
	}
	apply_force_audit(d);
}

/*
 * What no rule can allow: a raw socket (it bypasses the connect hooks) and a source
 * route (packets would go first to a hop the destination check never saw). Apps in
 * enforce mode, and unknown binaries when the policy denies them, are refused.
 */
static __always_inline void decide_beyond_rules(const struct exe_identity *id, struct decision *d)
{
	d->app_id = identify(id, &d->identity_unknown);
	d->rule = 0;
	d->verdict = d->app_id ? no_rule_verdict(d->app_id) : unknown_verdict();
	apply_force_audit(d);
}

#endif /* PINHOLE_ENFORCE_DECIDE_H */
