/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Name evidence, learnt from DNS replies as they arrive (cgroup_skb/ingress, before
 * the application can read them, so its first connect after an answer is decided
 * with it). A socket that sends to port 53 keeps its sender's executable in its
 * storage; a reply from port 53 to such a socket is parsed (dns_parse.h), each name
 * on the chain gets an id, and each address of the answer gets, per receiver, the
 * chain's names until max(ttl, dns_min_ttl) + dns_grace seconds from now.
 */
#ifndef PINHOLE_NAME_LEARN_H
#define PINHOLE_NAME_LEARN_H

#include "dns_packet.h"
#include "dns_parse.h"
#include "enforce_decide.h"
#include "pinhole.h"
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>

/* The executable that sent the socket's last query (shared by every generation). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct exe_identity);
} name_askers SEC(".maps");

/* The next name id (shared). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} name_id_next SEC(".maps");

/* The host's resolvers (--host-resolver): their answers are the host's. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct identity_key);
	__type(value, __u8);
} host_resolvers SEC(".maps");

/*
 * At a connect or send to port 53: replies to socket `sk` (a cgroup hook's bpf_sock or
 * an LSM hook's struct sock) are this executable's.
 */
static __always_inline void remember_name_asker(void *sk, __u16 port, const struct exe_identity *exe)
{
	struct exe_identity *a;

	if (!names_enabled || port != DNS_PORT || !sk)
		return;
	a = bpf_sk_storage_get(&name_askers, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (a)
		*a = *exe;
}

/* The id of chain name `k` (allocated on first sight); 0 when none could be had. */
static __always_inline __u32 intern_name(struct dns_parse *p, __u32 k)
{
	struct dns_name *name = &p->names[k & (DNS_NAME_SLOTS - 1)];
	__u32 zero = 0, id, *known;
	__u64 *next;

	/* Names are at most 253 bytes: the last byte keeps the length. */
	name->text[PINHOLE_NAME_BYTES - 1] = p->name_len[k & (DNS_NAME_SLOTS - 1)];
	known = bpf_map_lookup_elem(&name_ids, name);
	if (known) {
		id = *known;
		if (!bpf_map_lookup_elem(&name_texts, &id))
			bpf_map_update_elem(&name_texts, &id, name, BPF_ANY);
		return id;
	}
	next = bpf_map_lookup_elem(&name_id_next, &zero);
	if (!next)
		return 0;
	id = (__u32)__sync_fetch_and_add(next, 1) + 1;
	if (!id || bpf_map_update_elem(&name_texts, &id, name, BPF_ANY)) {
		count_name_stat(PINHOLE_NAMES_ID_FULL);
		return 0;
	}
	if (bpf_map_update_elem(&name_ids, name, &id, BPF_NOEXIST)) {
		/* Another CPU named it first: use its id. */
		known = bpf_map_lookup_elem(&name_ids, name);
		return known ? *known : 0;
	}
	return id;
}

/*
 * Gives `id` a slot of the entry until `until`: its own, a free or expired one, or
 * (counted) the one expiring first. A global function: verified once, not once per
 * name and address of a reply.
 */
__noinline int vouch(struct evidence_value *v, __u32 id, __u64 until, __u64 now)
{
	__u32 pick = PINHOLE_EVIDENCE_SLOTS, soonest = 0;

	if (!v) /* checked by the caller; a global function's verifier cannot know */
		return 0;
	for (int i = 0; i < PINHOLE_EVIDENCE_SLOTS; i++) {
		if (v->slots[i].name_id == id) {
			if (v->slots[i].until_ns < until)
				v->slots[i].until_ns = until;
			return 0;
		}
		if (pick == PINHOLE_EVIDENCE_SLOTS &&
		    (!v->slots[i].name_id || v->slots[i].until_ns <= now))
			pick = i;
		if (v->slots[i].until_ns < v->slots[soonest & (PINHOLE_EVIDENCE_SLOTS - 1)].until_ns)
			soonest = i;
	}
	if (pick == PINHOLE_EVIDENCE_SLOTS) {
		count_name_stat(PINHOLE_NAMES_SLOT_EVICTIONS);
		pick = soonest;
	}
	pick &= PINHOLE_EVIDENCE_SLOTS - 1;
	v->slots[pick].name_id = id;
	v->slots[pick].until_ns = until;
	return 0;
}

/* A reply's addresses being given its chain's names. */
struct evidence_add {
	struct evidence_key k;
	__u32 ids[PINHOLE_DNS_CHAIN];
	__u64 until;
	__u64 now;
};

/* Adds the chain's names to the evidence for address `n` of the reply. */
static long address_step(__u64 n, void *ctx)
{
	struct evidence_add *a = ctx;
	struct dns_parse *p = dns_scratch();
	struct evidence_value *v, fresh = {};

	if (!p || n >= p->naddrs || n >= PINHOLE_DNS_MAX_ADDRS)
		return 1;
	n &= PINHOLE_DNS_MAX_ADDRS - 1;
	/* Addresses count when owned by the chain's last name. */
	if (p->addr_owner[n] != p->chain - 1) {
		p->skipped++;
		return 0;
	}
	a->k.family = p->addr_family[n];
	__builtin_memcpy(a->k.addr, p->addrs[n], 16);
	v = bpf_map_lookup_elem(&name_evidence, &a->k);
	if (!v) {
		if (!bpf_map_update_elem(&name_evidence, &a->k, &fresh, BPF_NOEXIST))
			count_name_stat(PINHOLE_NAMES_EVIDENCE_ADDED);
		v = bpf_map_lookup_elem(&name_evidence, &a->k);
		if (!v)
			return 0;
	}
	for (int c = 0; c < PINHOLE_DNS_CHAIN; c++)
		if (a->ids[c])
			vouch(v, a->ids[c], a->until, a->now);
	return 0;
}

/* Learns from a DNS reply arriving at an asking socket. Never drops the packet. */
static __always_inline int learn_from_reply(struct __sk_buff *skb)
{
	struct bpf_sock *sk;
	struct identity_key who = {};
	struct evidence_add a = {};
	struct exe_identity *asker;
	struct dns_payload d;
	struct dns_parse *p;
	__u64 life;
	__u32 app_id, zero = 0;
	__u64 *epoch;
	volatile __u64 published __attribute__((unused));
	__u8 unknown = 0;

	/* Every packet passes here: what is no reply, or reaches a socket that never
	 * asked, leaves first. */
	if (surely_not_dns_reply(skb))
		return 1;
	sk = dns_reply_socket(skb);
	if (!sk)
		return 1;
	asker = bpf_sk_storage_get(&name_askers, sk, 0, 0);
	if (!asker || dns_reply_payload(skb, &d))
		return 1;
	p = dns_scratch();
	if (!p)
		return 1;
	count_name_stat(PINHOLE_NAMES_REPLIES);
	if (parse_dns_reply(skb, d.off, d.len, d.msg_len, p)) {
		count_name_stat(PINHOLE_NAMES_UNREADABLE);
		return 1;
	}
	who.ino = asker->ino;
	who.dev = asker->dev;
	if (bpf_map_lookup_elem(&host_resolvers, &who)) {
		a.k.kind = PINHOLE_RECEIVER_HOST;
	} else {
		app_id = identify(asker, &unknown);
		receiver_of(asker, app_id ? bpf_map_lookup_elem(&apps, &app_id) : NULL, &a.k);
	}
	for (int c = 0; c < PINHOLE_DNS_CHAIN; c++)
		if (c < p->chain)
			a.ids[c] = intern_name(p, c);
	a.now = bpf_ktime_get_boot_ns();
	life = p->ttl > dns_min_ttl ? p->ttl : dns_min_ttl;
	a.until = a.now + (life + dns_grace) * NS_PER_SEC;
	bpf_loop(PINHOLE_DNS_MAX_ADDRS, address_step, &a, 0);
	/*
	 * After the evidence changed: verdicts cached before are worked out again. The
	 * fetching add is ordered after the evidence's stores on every architecture (a
	 * plain one is not on arm64); the volatile use keeps the compiler from dropping
	 * the fetch.
	 */
	epoch = bpf_map_lookup_elem(&name_epoch, &zero);
	if (epoch)
		published = __sync_fetch_and_add(epoch, 1);
	if (p->skipped)
		count_name_stat(PINHOLE_NAMES_SKIPPED_ANSWERS);
	return 1;
}

#endif /* PINHOLE_NAME_LEARN_H */
