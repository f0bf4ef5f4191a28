/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Destination of a sock_addr hook call, read by the recorder and the enforcer alike.
 * The verifier only lets a program read the address fields of its own family, so
 * IPv4 and IPv6 each get a reader.
 */
#ifndef PINHOLE_SOCK_ADDR_H
#define PINHOLE_SOCK_ADDR_H

#include "pinhole.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/in.h>

static __always_inline void read_dst4(struct bpf_sock_addr *ctx, struct sock_dst *d)
{
	d->ip_version = 4;
	d->addr[0] = ctx->user_ip4;
	d->port = bpf_ntohs((__u16)ctx->user_port);
	d->protocol = ctx->protocol;
}

static __always_inline void read_dst6(struct bpf_sock_addr *ctx, struct sock_dst *d)
{
	d->ip_version = 6;
	d->addr[0] = ctx->user_ip6[0];
	d->addr[1] = ctx->user_ip6[1];
	d->addr[2] = ctx->user_ip6[2];
	d->addr[3] = ctx->user_ip6[3];
	d->port = bpf_ntohs((__u16)ctx->user_port);
	d->protocol = ctx->protocol;
}

#endif /* PINHOLE_SOCK_ADDR_H */
