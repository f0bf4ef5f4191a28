/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DNS replies for the trail. A socket that sends to port 53 keeps its sender in its
 * storage; a UDP or TCP packet from port 53 arriving at such a socket is copied (at
 * most PINHOLE_DNS_MAX bytes of the DNS message) into the connect ring, in order with
 * the connects, for user space to parse (recorder/src/dns.rs). Replies to a socket
 * that asked nothing are not copied.
 */
#ifndef PINHOLE_DNS_CAPTURE_H
#define PINHOLE_DNS_CAPTURE_H

#include "dns_packet.h"
#include "event_rings.h"
#include "pinhole.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/in.h>


/* The sender of the socket's last query; freed with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct connect_event);
} dns_askers SEC(".maps");

/* At a connect or send to port 53: the socket's replies are this record's. */
static __always_inline void remember_dns_asker(struct bpf_sock_addr *ctx, const struct connect_event *e)
{
	struct connect_event *a;

	if (e->dst.port != DNS_PORT || !ctx->sk)
		return;
	a = bpf_sk_storage_get(&dns_askers, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (a)
		__builtin_memcpy(a, e, sizeof(*a));
}

/* Copies a reply from port 53 to an asking socket into the ring. Never drops it. */
static __always_inline int capture_dns_reply(struct __sk_buff *skb)
{
	struct bpf_sock *sk;
	struct connect_event *asker;
	struct dns_event *e;
	struct dns_payload d;
	__u64 copy;

	/* Every packet passes here: what is no reply, or reaches a socket that never
	 * asked, leaves first. */
	if (surely_not_dns_reply(skb))
		return 1;
	sk = dns_reply_socket(skb);
	if (!sk)
		return 1;
	asker = bpf_sk_storage_get(&dns_askers, sk, 0, 0);
	if (!asker || dns_reply_payload(skb, &d))
		return 1;
	e = bpf_ringbuf_reserve(&connect_events, sizeof(*e), 0);
	if (!e) {
		count_lost(PINHOLE_LOST_DNS);
		return 1;
	}
	__builtin_memcpy(&e->asker, asker, sizeof(e->asker));
	e->asker.boot_ns = bpf_ktime_get_boot_ns();
	e->asker.hook = PINHOLE_HOOK_DNS_ANSWER;
	e->asker.dst.protocol = d.protocol;
	e->msg_len = d.msg_len;
	e->tcp = d.protocol == IPPROTO_TCP;
	/* 64 bits, clamped where it is passed: the verifier checks the register the call
	 * gets, and a 32-bit length's register may keep stale upper bits. The length is
	 * bounded as (len - 1) + 1: before Linux 6.8 the verifier learns nothing from
	 * "len != 0", and would see a zero-length copy. */
	copy = d.len;
	if (copy > PINHOLE_DNS_MAX)
		copy = PINHOLE_DNS_MAX;
	if (copy < 1) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	copy -= 1;
	barrier_var(copy);
	if (copy >= PINHOLE_DNS_MAX) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	e->len = copy + 1;
	if (bpf_skb_load_bytes(skb, d.off, e->data, copy + 1)) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	bpf_ringbuf_submit(e, 0);
	return 1;
}

#endif /* PINHOLE_DNS_CAPTURE_H */
