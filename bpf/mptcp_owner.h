/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who owns an MPTCP connection. Later subflows are connected by a kernel worker once a
 * peer advertises another address, on either side: the connecting side's, and an
 * accepting side's (towards the client's other address). The owner's process fields
 * are kept in the connection's socket storage: set when a process creates the MPTCP
 * socket, copied to each connection accepted on a listener (BPF_F_CLONE), and set at
 * the first connect of a socket made before pinhole started (the connect hook sees
 * the first subflow's TCP socket, with the owner as the current task). The worker's
 * subflows are then recorded and decided as the owner's.
 */
#ifndef PINHOLE_MPTCP_OWNER_H
#define PINHOLE_MPTCP_OWNER_H

#include "kernel_types.h"
#include "pinhole.h"
#include "task_identity.h"
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/in.h>

#define PF_KTHREAD_FLAG 0x00200000
#define IPPROTO_MPTCP_PROTO 262

struct mptcp_owner {
	struct connect_event who; /* process fields and executable; the rest unused */
	__u8 in_scope; /* enforcer: the owner was under --cgroup at its connect */
};

/* Freed with the connection's socket; shared by every enforcer generation. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct mptcp_owner);
} mptcp_owners SEC(".maps");

static __always_inline int current_is_kthread(void)
{
	return !!(bpf_get_current_task_btf()->flags & PF_KTHREAD_FLAG);
}

/* The MPTCP connection of a subflow's TCP socket; NULL for any other socket. */
static __always_inline struct mptcp_sock *mptcp_conn(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	if (!sk || sk->protocol != IPPROTO_TCP)
		return NULL;
	return bpf_skc_to_mptcp_sock(sk);
}

/*
 * Whether this connect is the kernel opening an additional MPTCP subflow (after the
 * peer advertised another address): it comes from a kernel worker, not the owner.
 */
static __always_inline int kernel_mptcp_subflow(struct bpf_sock_addr *ctx)
{
	return current_is_kthread() && mptcp_conn(ctx);
}

/* Remembers the caller as the owner of MPTCP connection `msk`, unless one is known. */
static __always_inline void remember_mptcp_owner_sk(void *msk, __u8 in_scope)
{
	struct mptcp_owner *o = bpf_sk_storage_get(&mptcp_owners, msk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!o || o->who.pid)
		return;
	read_current_task(&o->who);
	o->in_scope = in_scope;
}

/*
 * At a process's connect: if the socket is an MPTCP subflow of a connection whose
 * socket was made before pinhole started, remembers the caller as its owner.
 */
static __always_inline void remember_mptcp_owner(struct bpf_sock_addr *ctx, __u8 in_scope)
{
	struct mptcp_sock *msk = mptcp_conn(ctx);

	if (msk)
		remember_mptcp_owner_sk(msk, in_scope);
}

/* At a socket's creation by a process: an MPTCP socket is the caller's. */
static __always_inline void remember_mptcp_creator(struct bpf_sock *sk, __u8 in_scope)
{
	struct mptcp_owner *o;

	if (sk->protocol != IPPROTO_MPTCP_PROTO)
		return;
	o = bpf_sk_storage_get(&mptcp_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	read_current_task(&o->who);
	o->in_scope = in_scope;
}

/* The owner of the connection a kernel-opened subflow belongs to, if it was seen. */
static __always_inline struct mptcp_owner *mptcp_owner_of(struct bpf_sock_addr *ctx)
{
	struct mptcp_sock *msk = mptcp_conn(ctx);

	if (!msk)
		return NULL;
	return bpf_sk_storage_get(&mptcp_owners, msk, 0, 0);
}

/* Puts the owner's process fields and executable into a record made by a worker. */
static __always_inline void attribute_to_owner(struct connect_event *e, const struct mptcp_owner *o)
{
	e->pid = o->who.pid;
	e->tid = o->who.tid;
	e->ppid = o->who.ppid;
	e->uid = o->who.uid;
	e->gid = o->who.gid;
	e->netns = o->who.netns;
	e->cgroup_id = o->who.cgroup_id;
	e->exe = o->who.exe;
	__builtin_memcpy(e->comm, o->who.comm, sizeof(e->comm));
}

#endif /* PINHOLE_MPTCP_OWNER_H */
