/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Names in the enforcer's decision (policygen/src/matcher.rs, items 6 to 8): which
 * names vouch for a connect's address (DNS evidence the connecting binary, or in host
 * scope the host's resolver, received and that still counts), what those names match
 * in the policy (its exact names, wildcard bases, deny entries), and so which name
 * rule allows the connect or which deny entry refuses it.
 *
 * Evidence and name texts outlive a reload (the maps are shared by every generation);
 * what a name matches is the loaded policy's, cached per generation by name id and
 * worked out again from the name's text where the cache has no entry (after a reload,
 * or for a name first met at a connect). Included by enforce_decide.h after the
 * identity and app tables.
 */
#ifndef PINHOLE_NAME_DECIDE_H
#define PINHOLE_NAME_DECIDE_H

#include "pinhole.h"
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>

#define NS_PER_SEC 1000000000ULL

/* Set before load from the policy (names_enabled: it has name rules or deny lists). */
const volatile __u8 names_enabled = 0;
const volatile __u32 names_scope = PINHOLE_SCOPE_APP; /* for binaries outside the policy */
const volatile __u32 dns_min_ttl = 60;
const volatile __u32 dns_grace = 300;
/* The lengths of the policy's deny prefixes, as a bit set (bit n: length n). */
const volatile __u8 prefix_len_bits[PINHOLE_NAME_BYTES / 8] = {};
const volatile __u8 has_prefixes = 0;
/* Whether any app has deny entries of its own (name_rules with protocol 0). */
const volatile __u8 has_app_name_denies = 0;

/* ---- Shared by every generation ---- */

/* (receiver, address) -> the names vouching for it, each until when. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct evidence_key);
	__type(value, struct evidence_value);
} name_evidence SEC(".maps");

/* Name ids: a name's text (with its length in the last byte) <-> a number. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct dns_name);
	__type(value, __u32);
} name_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct dns_name);
} name_texts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PINHOLE_NAMES_STATS);
	__type(key, __u32);
	__type(value, __u64);
} name_stats SEC(".maps");

/*
 * Bumped after every change to the evidence (name_learn.h), so a verdict cached below
 * is used only while the evidence it was worked out from is unchanged.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} name_epoch SEC(".maps");

/* ---- This generation's policy ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct dns_name);
	__type(value, struct name_pattern);
} name_patterns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct dns_name);
	__type(value, struct name_prefix);
} name_prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct name_rule_key);
	__type(value, struct name_rule_value);
} name_rules SEC(".maps");

/* Name id -> what the name matches under this policy. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct name_match);
} name_matches SEC(".maps");

/*
 * What the names decided for (app, address, protocol, port): a connect's evidence
 * lookup, the names' matches and rules cost three hash lookups and a precise clock read;
 * a repeated connect then costs one lookup and a coarse clock read (verdict_clock). An
 * entry stands while the evidence epoch is the one it was worked out under, until the
 * first vouching name expires, and at most VERDICT_CACHE_NS (the coarse clock stops in
 * a suspend: a second after a resume bounds how long an expired answer still counts).
 * Only where no name rule is scoped (names_verdicts_cached): a scope depends on the
 * caller. Sized to the evidence (set by user space; 1 without names).
 */
struct name_verdict_key {
	struct evidence_key receiver; /* the app's own evidence key for the address */
	__u32 app_id;
	__u16 port;
	__u8 protocol;
	__u8 _pad;
};

struct name_verdict {
	__u32 deny; /* the deny entry's rule number: refused whatever allows it */
	__u32 rule; /* the best name rule allowing it */
	__u32 name_id; /* the name behind `rule` */
	__u32 _pad;
	__u64 epoch; /* cached: the evidence epoch it was worked out under */
	__u64 until_clock_ns; /* cached: valid until then (verdict_clock) */
};

#define VERDICT_CACHE_NS NS_PER_SEC

const volatile __u8 name_verdicts_cached = 0;
/*
 * LSM programs may not call the coarse clock (Linux 6.1 refuses it to tracing
 * programs): with the LSM backend every program of the generation times the cache by
 * the boot clock, so that one map is read by one clock.
 */
const volatile __u8 verdicts_boot_clock = 0;

static __always_inline __u64 verdict_clock(void)
{
	return verdicts_boot_clock ? bpf_ktime_get_boot_ns() : bpf_ktime_get_coarse_ns();
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct name_verdict_key);
	__type(value, struct name_verdict);
} name_verdicts SEC(".maps");

/* Working buffers for matching a name (process context; replies use dns_parse's). */
struct name_scratch {
	struct dns_name key;
	struct dns_name text;
	struct name_match match;
	__u32 len;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct name_scratch);
} name_scratch_buf SEC(".maps");

static __always_inline void count_name_stat(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&name_stats, &slot);

	if (n)
		*n += 1;
}

static __always_inline struct name_scratch *name_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&name_scratch_buf, &zero);
}

/* Who a binary is as a receiver of answers: its app's hash tag (`a`: its app, if it
 * is one), or its file. */
static __always_inline void receiver_of(const struct exe_identity *id, const struct app_info *a,
					struct evidence_key *k)
{
	if (a) {
		k->kind = PINHOLE_RECEIVER_APP;
		k->who = a->sha_tag;
		k->dev = 0;
	} else {
		k->kind = PINHOLE_RECEIVER_FILE;
		k->who = id->ino;
		k->dev = id->dev;
	}
}

static __always_inline void add_pattern(struct name_match *m, __u32 pattern, __u32 deny)
{
	if (pattern && m->count < PINHOLE_NAME_PATTERNS) {
		m->patterns[m->count & (PINHOLE_NAME_PATTERNS - 1)] = pattern;
		m->count++;
	}
	if (deny && !m->global_deny)
		m->global_deny = deny;
}

/* Fills the key with the text reversed (policy names are keyed so). */
static long reverse_step(__u64 i, void *ctx)
{
	struct name_scratch *s = name_scratch();

	if (!s || i >= s->len)
		return 1;
	s->key.text[i & (PINHOLE_NAME_BYTES - 1)] =
		s->text.text[(s->len - 1 - i) & (PINHOLE_NAME_BYTES - 1)];
	return 0;
}

/* Cuts the reversed key back a byte at a time; at each dot, the rest is a parent. */
static long parent_step(__u64 i, void *ctx)
{
	struct name_scratch *s = name_scratch();
	struct name_pattern *p;
	__u32 at;
	char c;

	if (!s || i >= s->len)
		return 1;
	at = (s->len - 1 - i) & (PINHOLE_NAME_BYTES - 1);
	c = s->key.text[at];
	s->key.text[at] = 0;
	if (c != '.')
		return 0;
	p = bpf_map_lookup_elem(&name_patterns, &s->key);
	if (p)
		add_pattern(&s->match, p->under, p->deny_under);
	return 0;
}

/* Cuts the name back a byte at a time, looking up the lengths deny prefixes have. */
static long prefix_step(__u64 i, void *ctx)
{
	struct name_scratch *s = name_scratch();
	struct name_prefix *p;
	__u32 len;

	if (!s || i >= s->len)
		return 1;
	len = (s->len - i) & (PINHOLE_NAME_BYTES - 1);
	if (prefix_len_bits[len / 8] & (1 << (len % 8))) {
		p = bpf_map_lookup_elem(&name_prefixes, &s->key);
		if (p)
			add_pattern(&s->match, p->pattern, p->global_deny);
	}
	s->key.text[(len - 1) & (PINHOLE_NAME_BYTES - 1)] = 0;
	return 0;
}

/*
 * What name `id` matches under this policy, worked out from its text and cached.
 * Returns the cached entry, or NULL when the name's text is gone (evicted).
 */
static __noinline struct name_match *match_name(__u32 id)
{
	struct name_scratch *s = name_scratch();
	struct dns_name *text = bpf_map_lookup_elem(&name_texts, &id);
	struct name_pattern *p;

	if (!s)
		return NULL;
	if (!text) {
		count_name_stat(PINHOLE_NAMES_LOST_NAME);
		return NULL;
	}
	__builtin_memcpy(&s->text, text, sizeof(s->text));
	s->len = (__u8)s->text.text[PINHOLE_NAME_BYTES - 1];
	s->text.text[PINHOLE_NAME_BYTES - 1] = 0;
	__builtin_memset(&s->match, 0, sizeof(s->match));
	__builtin_memset(&s->key, 0, sizeof(s->key));
	bpf_loop(PINHOLE_NAME_BYTES, reverse_step, NULL, 0);
	p = bpf_map_lookup_elem(&name_patterns, &s->key);
	if (p)
		add_pattern(&s->match, p->exact, p->deny_exact);
	bpf_loop(PINHOLE_NAME_BYTES, parent_step, NULL, 0);
	if (has_prefixes) {
		__builtin_memcpy(&s->key, &s->text, sizeof(s->key));
		bpf_loop(PINHOLE_NAME_BYTES, prefix_step, NULL, 0);
	}
	bpf_map_update_elem(&name_matches, &id, &s->match, BPF_ANY);
	return bpf_map_lookup_elem(&name_matches, &id);
}

/* What the names vouching for a connect decide (`v`), and for whom. The verdict is
 * cached as it is: no copy of it on the connect hooks' stack, which 6.1's verifier
 * bounds with the global functions' frames to 512 bytes. */
struct names_verdict {
	struct name_verdict v;
	__u64 uid_gid; /* in: the subject (struct subject), for scoped rules */
	__u64 owner_cgroup;
};

__u32 rule_in_spans(__u32 start, __u32 count, __u16 port, __u64 uid_gid, __u64 owner_cgroup);

/*
 * Adds what one vouching name brings to `out`: the global deny entry hitting it, the
 * app's deny entry, or its best rule for the protocol and port (the lowest number:
 * the matcher's order). A global function: verified once, whatever calls it.
 */
__noinline int judge_name(__u32 app_id, __u32 id, __u32 protocol, __u32 port,
			  struct names_verdict *out)
{
	struct name_match *m = bpf_map_lookup_elem(&name_matches, &id);
	struct name_rule_key k = { .app_id = app_id };
	struct name_rule_value *v;
	__u32 rule;

	if (!out)
		return 0;
	if (!m)
		m = match_name(id);
	if (!m)
		return 0;
	if (m->global_deny && !out->v.deny)
		out->v.deny = m->global_deny;
	if (!app_id)
		return 0;
	for (int j = 0; j < PINHOLE_NAME_PATTERNS; j++) {
		if (j >= m->count)
			break;
		k.pattern = m->patterns[j];
		if (has_app_name_denies) {
			k.protocol = 0;
			v = bpf_map_lookup_elem(&name_rules, &k);
			if (v && v->deny && !out->v.deny)
				out->v.deny = v->deny;
		}
		k.protocol = protocol;
		v = bpf_map_lookup_elem(&name_rules, &k);
		if (!v)
			continue;
		rule = rule_in_spans(v->start, v->count, port, out->uid_gid, out->owner_cgroup);
		if (rule && (!out->v.rule || rule < out->v.rule)) {
			out->v.rule = rule;
			out->v.name_id = id;
		}
	}
	return 0;
}

/* Judges every name of an evidence entry that still counts; lowers *soonest to the
 * first expiry among them. */
static __always_inline void judge_entry(const struct evidence_value *v, __u64 now, __u32 app_id,
					__u8 protocol, __u16 port, struct names_verdict *out,
					__u64 *soonest)
{
	if (!v)
		return;
	for (int i = 0; i < PINHOLE_EVIDENCE_SLOTS; i++)
		if (v->slots[i].name_id && v->slots[i].until_ns > now) {
			judge_name(app_id, v->slots[i].name_id, protocol, port, out);
			if (v->slots[i].until_ns < *soonest)
				*soonest = v->slots[i].until_ns;
		}
}

/*
 * The names vouching for addr to the receiver `k` names (and in host scope to the
 * host's resolvers), judged for `app_id`, protocol and port. Returns how long (ns)
 * this stays the answer if the evidence does not change: until the first vouching
 * name expires.
 */
static __always_inline __u64 judge_evidence(struct evidence_key *k, __u8 host_scope, __u32 app_id,
					    __u8 protocol, __u16 port, struct names_verdict *out)
{
	struct evidence_value *own, *host = NULL;
	__u64 now, soonest = ~0ULL;

	own = bpf_map_lookup_elem(&name_evidence, k);
	if (host_scope) {
		k->kind = PINHOLE_RECEIVER_HOST;
		k->who = 0;
		k->dev = 0;
		host = bpf_map_lookup_elem(&name_evidence, k);
	}
	if (!own && !host)
		return ~0ULL;
	now = bpf_ktime_get_boot_ns();
	judge_entry(own, now, app_id, protocol, port, out, &soonest);
	judge_entry(host, now, app_id, protocol, port, out, &soonest);
	return soonest - now;
}

/*
 * The names vouching for addr (family, network-order words) to `app_id` (0: a binary
 * outside the policy, known by its file) and what they decide for protocol and port.
 */
static __always_inline void decide_by_names(const struct exe_identity *id, __u32 app_id,
					    __u8 protocol, __u8 family, const __u32 addr[4],
					    __u16 port, struct names_verdict *out)
{
	struct app_info *a = app_id ? bpf_map_lookup_elem(&apps, &app_id) : NULL;
	struct name_verdict_key vk = {
		.receiver = { .family = family }, .app_id = app_id, .port = port, .protocol = protocol
	};
	struct name_verdict *cached;
	__u64 *epoch = NULL, life;
	__u32 zero = 0;

	__builtin_memcpy(vk.receiver.addr, addr, 16);
	receiver_of(id, a, &vk.receiver);
	if (a && name_verdicts_cached) {
		epoch = bpf_map_lookup_elem(&name_epoch, &zero);
		cached = bpf_map_lookup_elem(&name_verdicts, &vk);
		if (epoch && cached && cached->epoch == *epoch &&
		    verdict_clock() < cached->until_clock_ns) {
			out->v = *cached;
			return;
		}
		/* Read with a full barrier before the evidence: what is cached under this
		 * epoch is never older than it. */
		if (epoch)
			out->v.epoch = __sync_fetch_and_add(epoch, 0);
	}
	life = judge_evidence(&vk.receiver, (a ? a->dns_scope : names_scope) == PINHOLE_SCOPE_HOST,
			      app_id, protocol, port, out);
	if (!epoch)
		return;
	out->v.until_clock_ns = verdict_clock() +
				 (life < VERDICT_CACHE_NS ? life : VERDICT_CACHE_NS);
	/* The host's key may have been looked up in it: the app's again. */
	receiver_of(id, a, &vk.receiver);
	bpf_map_update_elem(&name_verdicts, &vk, &out->v, BPF_ANY);
}

#endif /* PINHOLE_NAME_DECIDE_H */
