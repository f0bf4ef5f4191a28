/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Finding a DNS reply in a packet arriving at a socket: a UDP datagram or TCP segment
 * from port 53, and where its DNS message starts. Shared by the recorder (which copies
 * replies to the trail) and the enforcer (which parses them for name evidence).
 */
#ifndef PINHOLE_DNS_PACKET_H
#define PINHOLE_DNS_PACKET_H

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/in.h>

#define DNS_PORT 53
#define ETH_P_IPV4 0x0800
#define ETH_P_IPV6_ 0x86DD
#define IPV6_HDR_LEN 40
#define UDP_HDR_LEN 8

/* Where a reply's DNS message is in the packet. */
struct dns_payload {
	__u32 off; /* first byte of the message */
	__u32 len; /* bytes of it in this packet */
	__u32 msg_len; /* the message's length (TCP: from its prefix) */
	__u8 protocol; /* IPPROTO_UDP or IPPROTO_TCP */
};

/*
 * Whether a packet surely does not come from port 53, judged from the bytes in place
 * (no helper call: every packet of every socket passes the ingress programs, and all
 * but the replies leave here). 0 when unsure (headers not in the linear part): the
 * full check (dns_reply_payload) decides. Agrees with it: an IPv6 packet whose next
 * header is not TCP or UDP is not walked there either.
 */
static __always_inline int surely_not_dns_reply(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	__u8 *ip = data;
	__u16 *sport;
	__u32 off;
	__u8 proto;

	if (data + IPV6_HDR_LEN > end)
		return 0;
	if ((ip[0] >> 4) == 4) {
		proto = ip[9];
		off = (ip[0] & 0x0f) * 4;
	} else if ((ip[0] >> 4) == 6) {
		proto = ip[6];
		off = IPV6_HDR_LEN;
	} else {
		return 1;
	}
	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return 1;
	sport = data + off;
	if ((void *)(sport + 1) > end)
		return 0;
	return *sport != bpf_htons(DNS_PORT);
}

/* The full socket a packet arrives at, if any. */
static __always_inline struct bpf_sock *dns_reply_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	return sk ? bpf_sk_fullsock(sk) : NULL;
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

/*
 * Fills `d` for a packet from port 53; returns -1 for any other packet. For TCP, the
 * first segment of a reply starts with its 2-byte length, which is skipped.
 */
static __always_inline int dns_reply_payload(struct __sk_buff *skb, struct dns_payload *d)
{
	__u32 off;
	__u16 sport, tcp_len;
	__u8 proto = 0, doff;

	off = transport_offset(skb, &proto);
	if (!off || (proto != IPPROTO_UDP && proto != IPPROTO_TCP))
		return -1;
	if (bpf_skb_load_bytes(skb, off, &sport, 2) || sport != bpf_htons(DNS_PORT))
		return -1;
	if (proto == IPPROTO_UDP) {
		off += UDP_HDR_LEN;
	} else {
		if (bpf_skb_load_bytes(skb, off + 12, &doff, 1))
			return -1;
		off += (doff >> 4) * 4;
		if (bpf_skb_load_bytes(skb, off, &tcp_len, 2))
			return -1;
		off += 2;
	}
	if (skb->len <= off)
		return -1;
	d->off = off;
	d->len = skb->len - off;
	d->protocol = proto;
	d->msg_len = proto == IPPROTO_TCP ? bpf_ntohs(tcp_len) : d->len;
	return 0;
}

#endif /* PINHOLE_DNS_PACKET_H */
