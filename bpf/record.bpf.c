/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pinhole's recorder: observes every outbound connect and unconnected UDP send on
 * the cgroup-v2 hierarchy it is attached to, and every exec, and never blocks any.
 */
#include "kernel_types.h"
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "pinhole.h"
#include "event_rings.h"
#include "sock_addr.h"
#include "task_identity.h"
#include "mptcp_owner.h"
#include "dns_capture.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Reserves a connect record and fills everything but the destination. */
static __always_inline struct connect_event *start_connect_event(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct connect_event *e = bpf_ringbuf_reserve(&connect_events, sizeof(*e), 0);

	if (!e) {
		count_lost(PINHOLE_LOST_CONNECT);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->sock_cookie = bpf_get_socket_cookie(ctx);
	e->hook = hook;
	e->verdict = PINHOLE_VERDICT_OBSERVED;
	read_current_task(e);
	return e;
}

/*
 * A connect on an MPTCP subflow: by a process, it names the connection's owner; by a
 * kernel worker, it is an additional subflow, recorded as the owner's.
 */
static __always_inline void note_mptcp(struct bpf_sock_addr *ctx, struct connect_event *e)
{
	struct mptcp_owner *o;

	if (!current_is_kthread()) {
		remember_mptcp_owner(ctx, 1);
		return;
	}
	if (!mptcp_conn(ctx))
		return;
	e->hook = PINHOLE_HOOK_MPTCP_SUBFLOW;
	o = mptcp_owner_of(ctx);
	if (o)
		attribute_to_owner(e, o);
}

static __always_inline int record4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct connect_event *e = start_connect_event(ctx, hook);

	if (e) {
		read_dst4(ctx, &e->dst);
		if (hook == PINHOLE_HOOK_CONNECT)
			note_mptcp(ctx, e);
		remember_dns_asker(ctx, e);
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	return 1;
}

static __always_inline int record6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct connect_event *e = start_connect_event(ctx, hook);

	if (e) {
		read_dst6(ctx, &e->dst);
		if (hook == PINHOLE_HOOK_CONNECT)
			note_mptcp(ctx, e);
		remember_dns_asker(ctx, e);
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	return 1;
}

SEC("cgroup/connect4")
int record_connect4(struct bpf_sock_addr *ctx)
{
	return record4(ctx, PINHOLE_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int record_connect6(struct bpf_sock_addr *ctx)
{
	return record6(ctx, PINHOLE_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int record_sendmsg4(struct bpf_sock_addr *ctx)
{
	return record4(ctx, PINHOLE_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int record_sendmsg6(struct bpf_sock_addr *ctx)
{
	return record6(ctx, PINHOLE_HOOK_SENDMSG);
}

/* DNS replies, before the application reads them (see dns_capture.h). */
SEC("cgroup_skb/ingress")
int record_dns_reply(struct __sk_buff *skb)
{
	return capture_dns_reply(skb);
}

#define SOCK_DGRAM_TYPE 2
#define SOCK_RAW_TYPE 3

/*
 * Raw sockets send without passing the connect or sendmsg hooks, and ping sockets
 * send unconnected datagrams the sendmsg hooks do not see: the trail records that such
 * a socket was opened, and by whom, even where no destination can be seen.
 */
SEC("cgroup/sock_create")
int record_sock_create(struct bpf_sock *sk)
{
	struct connect_event *e;
	int ping = sk->type == SOCK_DGRAM_TYPE &&
		   (sk->protocol == IPPROTO_ICMP || sk->protocol == IPPROTO_ICMPV6);

	remember_mptcp_creator(sk, 1);
	if (sk->type != SOCK_RAW_TYPE && !ping)
		return 1;
	e = bpf_ringbuf_reserve(&connect_events, sizeof(*e), 0);
	if (!e) {
		count_lost(PINHOLE_LOST_CONNECT);
		return 1;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->sock_cookie = bpf_get_socket_cookie(sk);
	e->hook = PINHOLE_HOOK_SOCK_CREATE;
	e->verdict = PINHOLE_VERDICT_OBSERVED;
	read_current_task(e);
	e->dst.ip_version = sk->family == 10 /* AF_INET6 */ ? 6 : 4;
	e->dst.protocol = sk->protocol;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 1;
}

SEC("tp/sched/sched_process_exec")
int record_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct exec_event *e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
	__u32 filename_off;

	if (!e) {
		count_lost(PINHOLE_LOST_EXEC);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->pid = current_tgid();
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (__u32)current_uid_gid();
	read_current_comm(e->comm, sizeof(e->comm));
	/* By this tracepoint mm->exe_file is already the new binary. */
	read_exe_identity(task, &e->exe);
	filename_off = BPF_CORE_READ(ctx, __data_loc_filename) & 0xFFFF;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + filename_off);
	/* Adaptive wakeup can leave the reader asleep for a whole poll interval, long
	 * enough for a short-lived process to be gone before /proc/<pid>/exe is opened. */
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return 0;
}
