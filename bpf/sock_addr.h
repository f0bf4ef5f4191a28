/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Destination of a sock_addr hook call. The verifier only lets a program read the
 * address fields of its own family, so IPv4 and IPv6 each get a reader.
 */
#ifndef PINHOLE_SOCK_ADDR_H
#define PINHOLE_SOCK_ADDR_H

#include "pinhole.h"
#include <bpf/bpf_endian.h>
#include <linux/bpf.h>

static __always_inline void read_dst4(struct bpf_sock_addr *ctx, struct connect_event *e)
{
	e->ip_version = 4;
	e->dst_addr[0] = ctx->user_ip4;
	e->dst_port = bpf_ntohs((__u16)ctx->user_port);
	e->protocol = ctx->protocol;
}

static __always_inline void read_dst6(struct bpf_sock_addr *ctx, struct connect_event *e)
{
	e->ip_version = 6;
	e->dst_addr[0] = ctx->user_ip6[0];
	e->dst_addr[1] = ctx->user_ip6[1];
	e->dst_addr[2] = ctx->user_ip6[2];
	e->dst_addr[3] = ctx->user_ip6[3];
	e->dst_port = bpf_ntohs((__u16)ctx->user_port);
	e->protocol = ctx->protocol;
}

#endif /* PINHOLE_SOCK_ADDR_H */
