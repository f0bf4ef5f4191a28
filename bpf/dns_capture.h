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

#include "event_rings.h"
#include "pinhole.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/in.h>

#define DNS_PORT 53
#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6_ 0x86DD
#define IPV6_HDR_LEN 40
#define UDP_HDR_LEN 8

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

/* Where the transport header starts and which transport it is; 0 when not IP. */
static __always_inline __u32 transport_offset(struct __sk_buff *skb, __u8 *proto)
{
	__u8 b[2];

	if (skb->protocol == bpf_htons(ETH_P_IPV4)) {
		if (bpf_skb_load_bytes(skb, 0, b, 1) || bpf_skb_load_bytes(skb, 9, proto, 1))
			return 0;
		return (b[0] & 0x0f) * 4;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6_)) {
		/* Extension headers are not walked: DNS replies do not carry them. */
		if (bpf_skb_load_bytes(skb, 6, proto, 1))
			return 0;
		return IPV6_HDR_LEN;
	}
	return 0;
}

/* Copies a reply from port 53 to an asking socket into the ring. Never drops it. */
static __always_inline int capture_dns_reply(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct connect_event *asker;
	struct dns_event *e;
	__u32 off, len;
	__u64 copy;
	__u16 sport, tcp_len;
	__u8 proto = 0, doff;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
	off = transport_offset(skb, &proto);
	if (!off || (proto != IPPROTO_UDP && proto != IPPROTO_TCP))
		return 1;
	if (bpf_skb_load_bytes(skb, off, &sport, 2) || sport != bpf_htons(DNS_PORT))
		return 1;
	asker = bpf_sk_storage_get(&dns_askers, sk, 0, 0);
	if (!asker)
		return 1;
	if (proto == IPPROTO_UDP) {
		off += UDP_HDR_LEN;
	} else {
		if (bpf_skb_load_bytes(skb, off + 12, &doff, 1))
			return 1;
		off += (doff >> 4) * 4;
		/* The first segment of a reply starts with its 2-byte length. */
		if (bpf_skb_load_bytes(skb, off, &tcp_len, 2))
			return 1;
		off += 2;
	}
	if (skb->len <= off)
		return 1;
	len = skb->len - off;
	e = bpf_ringbuf_reserve(&connect_events, sizeof(*e), 0);
	if (!e) {
		count_lost(PINHOLE_LOST_DNS);
		return 1;
	}
	__builtin_memcpy(&e->asker, asker, sizeof(e->asker));
	e->asker.boot_ns = bpf_ktime_get_boot_ns();
	e->asker.hook = PINHOLE_HOOK_DNS_ANSWER;
	e->asker.dst.protocol = proto;
	e->msg_len = proto == IPPROTO_TCP ? bpf_ntohs(tcp_len) : len;
	e->tcp = proto == IPPROTO_TCP;
	/* 64 bits, clamped where it is passed: the verifier checks the register the call
	 * gets, and a 32-bit length's register may keep stale upper bits. */
	copy = len;
	if (copy > PINHOLE_DNS_MAX)
		copy = PINHOLE_DNS_MAX;
	barrier_var(copy);
	if (copy < 1 || copy > PINHOLE_DNS_MAX) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	e->len = copy;
	if (bpf_skb_load_bytes(skb, off, e->data, copy)) {
		bpf_ringbuf_discard(e, 0);
		return 1;
	}
	bpf_ringbuf_submit(e, 0);
	return 1;
}

#endif /* PINHOLE_DNS_CAPTURE_H */
