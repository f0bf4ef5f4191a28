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

#define PF_KTHREAD_FLAG 0x00200000

/*
 * Whether this connect is the kernel opening an additional MPTCP subflow (after the
 * peer advertised another address): it comes from a kernel worker, not the owner.
 */
static __always_inline int kernel_mptcp_subflow(struct bpf_sock_addr *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bpf_sock *sk = ctx->sk;
	struct tcp_sock *tp;

	if (!(task->flags & PF_KTHREAD_FLAG) || !sk || sk->protocol != IPPROTO_TCP)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	return tp && tp->is_mptcp;
}


#endif /* PINHOLE_SOCK_ADDR_H */
