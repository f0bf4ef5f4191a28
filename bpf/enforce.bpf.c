/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pinhole's enforcer: decides every outbound connect, unconnected UDP send and raw
 * socket by the hashed identity of the calling executable (enforce_decide.h), counts
 * each decision per app, and hands decisions and unknown executables to user space.
 * Where the policy names hosts, DNS replies are read as they arrive (name_learn.h).
 */
#include "kernel_types.h"
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "pinhole.h"
#include "event_rings.h" /* one set for every generation: user space reuses them on reload */
#include "sock_addr.h"
#include "task_identity.h"
#include "mptcp_owner.h"
#include "enforce_decide.h"
#include "name_learn.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SOCK_RAW_TYPE 3 /* SOCK_RAW */

/* Which loaded policy this program belongs to, and whether allowed decisions are sent. */
const volatile __u32 generation = 0;
const volatile __u8 send_allowed = 0;
/*
 * --backend lsm: processes are decided at the LSM hooks (enforce_lsm.h); the cgroup
 * connect hooks decide only the MPTCP subflows kernel workers open, which no LSM hook sees.
 */
const volatile __u8 lsm_backend = 0;

/*
 * --cgroup: only calls made by a task under this cgroup (id, and its depth below the
 * root) are decided, whichever cgroup the socket was created in; 0: every task. The
 * programs are attached above it (the root), so sockets made elsewhere pass them too.
 */
const volatile __u64 scope_cgroup_id = 0;
const volatile __u32 scope_level = 0;

static __always_inline int out_of_scope(void)
{
	if (!scope_cgroup_id)
		return 0;
	/* A kernel worker acts for a connection: its MPTCP subflows go by their owner. */
	if (current_is_kthread())
		return 0;
	return current_ancestor_cgroup_id(scope_level) != scope_cgroup_id;
}

/* Per app id (0: unknown binaries); sized to the policy before load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct verdict_counters);
} counters SEC(".maps");

/* Executable versions already reported as unknown: each is hashed once, not per connect. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct exe_identity);
	__type(value, __u8);
} reported SEC(".maps");

static __always_inline void count(const struct decision *d)
{
	struct verdict_counters *c = bpf_map_lookup_elem(&counters, &d->app_id);

	if (!c)
		return;
	if (d->verdict == PINHOLE_VERDICT_ALLOWED)
		c->allowed++;
	else if (d->verdict == PINHOLE_VERDICT_DENIED)
		c->denied++;
	else
		c->would_deny++;
}

/* Asks user space to hash an executable the identity table does not (or no longer) know. */
static __always_inline void report_exe(const struct exe_identity *id, __u32 reason, void *filename_src)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u8 one = 1;
	struct exec_event *e;

	if (!id->ino)
		return;
	/* The trail (send_allowed) wants every exec's path; otherwise once per version. */
	if ((reason == PINHOLE_EXEC_UNKNOWN || !send_allowed) && bpf_map_lookup_elem(&reported, id))
		return;
	e = bpf_ringbuf_reserve(&exec_events, sizeof(*e), 0);
	if (!e) {
		count_lost(PINHOLE_LOST_EXEC);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->boot_ns = bpf_ktime_get_boot_ns();
	e->pid = current_tgid();
	e->ppid = task->real_parent->tgid;
	e->uid = (__u32)current_uid_gid();
	e->reason = reason;
	e->exe = *id;
	read_current_comm(e->comm, sizeof(e->comm));
	if (filename_src)
		bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename_src);
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	bpf_map_update_elem(&reported, id, &one, BPF_ANY);
}

/*
 * What a hook knows before deciding: the caller's executable and the destination.
 * The rest of the record (process fields, comm, cookie) is read only when the decision
 * is sent, straight into the ring buffer: most allowed connects are never sent.
 */
struct pending {
	struct exe_identity exe;
	struct sock_dst dst; /* as the socket saw it; sock_create leaves the address zero */
	__u8 hook;
};

/*
 * Counts the decision and sends it on when user space wants it; returns the hook
 * result. `sock_ctx`: the hook's context, whose socket cookie the record names (NULL
 * where the hook has no cookie helper); asked only for a record sent, for a socket's
 * first cookie costs an atomic. `owner`: the process a kernel worker's MPTCP subflow
 * is decided for.
 */
static __always_inline int conclude(const struct pending *p, const struct decision *d,
				    void *sock_ctx, const struct mptcp_owner *owner)
{
	count(d);
	/* A worker has no executable to hash; its owner's connect reported the owner's. */
	if (d->identity_unknown && !owner)
		report_exe(&p->exe, PINHOLE_EXEC_UNKNOWN, NULL);
	if (send_allowed || d->verdict != PINHOLE_VERDICT_ALLOWED) {
		struct connect_event *e = bpf_ringbuf_reserve(&connect_events, sizeof(*e), 0);

		if (!e) {
			count_lost(PINHOLE_LOST_CONNECT);
		} else {
			__builtin_memset(e, 0, sizeof(*e));
			e->boot_ns = bpf_ktime_get_boot_ns();
			e->sock_cookie = sock_ctx ? bpf_get_socket_cookie(sock_ctx) : 0;
			read_current_task(e);
			if (owner)
				attribute_to_owner(e, owner);
			e->exe = p->exe;
			e->dst = p->dst;
			e->hook = p->hook;
			e->verdict = d->verdict;
			e->app_id = d->app_id;
			e->rule = d->rule;
			e->name_id = d->name_id;
			e->generation = generation;
			bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
		}
	}
	return d->verdict != PINHOLE_VERDICT_DENIED;
}

static __always_inline void start_pending(struct pending *p, __u8 hook)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->hook = hook;
	read_exe_identity(bpf_get_current_task_btf(), &p->exe);
}

/*
 * Who a connect is decided for. A process's connect on an MPTCP subflow names the
 * connection's owner (mptcp_owner.h); a subflow a kernel worker opens later (the peer
 * advertised another address) is decided as the owner's connect to that address, and
 * refused if the owner connected before this enforcer started. Returns 0 when the
 * call is not decided here (outside --cgroup); sets *subflow and *owner.
 */
static __always_inline int decided_for(struct bpf_sock_addr *ctx, __u8 hook, __u8 *subflow,
				       struct mptcp_owner **owner)
{
	if (lsm_backend && !current_is_kthread())
		return 0;
	if (hook != PINHOLE_HOOK_CONNECT)
		return !out_of_scope();
	if (!current_is_kthread()) {
		__u8 in_scope = !out_of_scope();

		remember_mptcp_owner(ctx, in_scope);
		return in_scope;
	}
	if (!mptcp_conn(ctx))
		return 1;
	*subflow = 1;
	*owner = mptcp_owner_of(ctx);
	return !*owner || (*owner)->in_scope;
}

/* Decides a connect or send (`addr` in `family`) for its process or subflow owner. */
static __always_inline int enforce_dst(struct pending *p, __u8 family, __u32 *addr, void *sock_ctx,
				       __u8 subflow, const struct mptcp_owner *owner)
{
	struct decision d = {};
	struct subject who = { .uid_gid = current_uid_gid() };

	if (subflow) {
		p->hook = PINHOLE_HOOK_MPTCP_SUBFLOW;
		if (!owner) {
			d.verdict = force_audit ? PINHOLE_VERDICT_WOULD_DENY : PINHOLE_VERDICT_DENIED;
			return conclude(p, &d, sock_ctx, NULL);
		}
		p->exe = owner->who.exe;
		who.uid_gid = (__u64)owner->who.gid << 32 | owner->who.uid;
		/* Never 0 for a real cgroup: the root's id is 1. */
		who.owner_cgroup = owner->who.cgroup_id;
	}
	decide_connect(&p->exe, &who, p->dst.protocol, family, addr, p->dst.port, &d);
	return conclude(p, &d, sock_ctx, owner);
}

static __always_inline int enforce4(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct mptcp_owner *owner = NULL;
	struct pending p;
	__u8 subflow = 0;

	if (!decided_for(ctx, hook, &subflow, &owner))
		return 1;
	start_pending(&p, hook);
	read_dst4(ctx, &p.dst);
	remember_name_asker(ctx->sk, p.dst.port, &p.exe);
	return enforce_dst(&p, PINHOLE_FAMILY_V4, p.dst.addr, ctx, subflow, owner);
}

static __always_inline int enforce6(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct mptcp_owner *owner = NULL;
	struct pending p;
	__u32 addr[4] = {};
	__u8 family = PINHOLE_FAMILY_V6, subflow = 0;

	if (!decided_for(ctx, hook, &subflow, &owner))
		return 1;
	start_pending(&p, hook);
	read_dst6(ctx, &p.dst);
	remember_name_asker(ctx->sk, p.dst.port, &p.exe);
	/* ::ffff:a.b.c.d reaches an IPv4 host: it is matched as IPv4, as in replay. */
	if (p.dst.addr[0] == 0 && p.dst.addr[1] == 0 && p.dst.addr[2] == bpf_htonl(0xffff)) {
		family = PINHOLE_FAMILY_V4;
		addr[0] = p.dst.addr[3];
	} else {
		__builtin_memcpy(addr, p.dst.addr, sizeof(addr));
	}
	return enforce_dst(&p, family, addr, ctx, subflow, owner);
}

SEC("cgroup/connect4")
int enforce_connect4(struct bpf_sock_addr *ctx)
{
	return enforce4(ctx, PINHOLE_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int enforce_connect6(struct bpf_sock_addr *ctx)
{
	return enforce6(ctx, PINHOLE_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int enforce_sendmsg4(struct bpf_sock_addr *ctx)
{
	return enforce4(ctx, PINHOLE_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int enforce_sendmsg6(struct bpf_sock_addr *ctx)
{
	return enforce6(ctx, PINHOLE_HOOK_SENDMSG);
}

/* Raw IPv4/IPv6 sockets send without connect or sendmsg hooks; decide at creation. */
SEC("cgroup/sock_create")
int enforce_sock_create(struct bpf_sock *sk)
{
	struct pending p;
	struct decision d = {};
	__u8 in_scope;

	/* Every socket passes here: the common case leaves before any lookup. */
	if (sk->type != SOCK_RAW_TYPE && sk->protocol != IPPROTO_MPTCP_PROTO)
		return 1;
	in_scope = !out_of_scope();
	remember_mptcp_creator(sk, in_scope);
	if (sk->type != SOCK_RAW_TYPE || !in_scope)
		return 1;
	start_pending(&p, PINHOLE_HOOK_SOCK_CREATE);
	p.dst.ip_version = sk->family == 10 /* AF_INET6 */ ? 6 : 4;
	p.dst.protocol = sk->protocol;
	decide_beyond_rules(&p.exe, &d);
	return conclude(&p, &d, NULL, NULL);
}

#define SOL_IP_LEVEL 0
#define SOL_IPV6_LEVEL 41
#define IP_OPTIONS_OPT 4
#define IPV6_2292RTHDR_OPT 5
#define IPV6_RTHDR_OPT 57
#define IPOPT_END_TYPE 0
#define IPOPT_NOOP_TYPE 1
#define IPOPT_LSRR_TYPE 131
#define IPOPT_SSRR_TYPE 137
#define MAX_IPOPT_BYTES 40 /* the IPv4 header's option space */

/* The option bytes being parsed, on the stack, and where the parser is. */
struct ipopt_scan {
	__u8 buf[64];
	__u32 len;
	__u32 off;
	__u8 found;
};

/* One option of the list; bpf_loop verifies this once, not once per possible offset. */
static long scan_one_option(__u64 index, void *data)
{
	struct ipopt_scan *s = data;
	__u32 off = s->off;
	__u8 type, len;

	if (off >= s->len || off >= MAX_IPOPT_BYTES)
		return 1;
	type = s->buf[off & 63];
	if (type == IPOPT_END_TYPE)
		return 1;
	if (type == IPOPT_LSRR_TYPE || type == IPOPT_SSRR_TYPE) {
		s->found = 1;
		return 1;
	}
	if (type == IPOPT_NOOP_TYPE) {
		s->off = off + 1;
		return 0;
	}
	len = s->buf[(off + 1) & 63];
	if (len < 2)
		return 1; /* malformed: the kernel refuses it */
	s->off = off + len;
	return 0;
}

/* Whether an IP_OPTIONS value holds a loose or strict source route. */
static __always_inline int has_ipv4_source_route(struct bpf_sockopt *ctx)
{
	__u8 *p = ctx->optval, *end = ctx->optval_end;
	struct ipopt_scan s = {};

#pragma unroll
	for (int i = 0; i < MAX_IPOPT_BYTES; i++) {
		if (p + i + 1 > end)
			break;
		s.buf[i] = p[i];
		s.len = i + 1;
	}
	bpf_loop(MAX_IPOPT_BYTES, scan_one_option, &s, 0);
	return s.found;
}

/* Whether this setsockopt asks for a source route: IPv4 LSRR/SSRR or an IPv6 routing header. */
static __always_inline int sets_source_route(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_IPV6_LEVEL)
		return (ctx->optname == IPV6_RTHDR_OPT || ctx->optname == IPV6_2292RTHDR_OPT) &&
		       ctx->optlen > 0;
	return ctx->level == SOL_IP_LEVEL && ctx->optname == IP_OPTIONS_OPT &&
	       has_ipv4_source_route(ctx);
}

/*
 * A source route sends packets to a first hop of the sender's choosing, while the
 * connect hooks check only the final destination: refused like a raw socket.
 */
SEC("cgroup/setsockopt")
int enforce_setsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct pending p;
	struct decision d = {};

	if (!sk || !sets_source_route(ctx) || out_of_scope())
		return 1;
	start_pending(&p, PINHOLE_HOOK_SETSOCKOPT);
	p.dst.ip_version = sk->family == 10 /* AF_INET6 */ ? 6 : 4;
	p.dst.protocol = sk->protocol;
	decide_beyond_rules(&p.exe, &d);
	return conclude(&p, &d, NULL, NULL); /* no socket cookie helper for sockopt programs */
}

/* A new executable may be a known app's bytes under a new inode: user space hashes it. */
SEC("tp/sched/sched_process_exec")
int enforce_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct exe_identity id = {};
	__u8 unknown = 0;
	__u32 filename_off;

	read_exe_identity(task, &id);
	identify(&id, &unknown);
	/* Known apps need nothing; the audit trail wants every exec to name binaries. */
	if (!unknown && !send_allowed)
		return 0;
	filename_off = BPF_CORE_READ(ctx, __data_loc_filename) & 0xFFFF;
	report_exe(&id, PINHOLE_EXEC_NEW, (void *)ctx + filename_off);
	return 0;
}

#define IPV6_HDR_BYTES 40
#define NEXTHDR_HOP_BY_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_DEST_OPTS 60

/* Whether an IPv4 packet's options hold a loose or strict source route. */
static __always_inline int ipv4_packet_source_routed(struct __sk_buff *skb, __u8 vihl)
{
	struct ipopt_scan s = {};
	__u32 optlen = (vihl & 0xf) * 4;

	if (optlen <= 20)
		return 0;
	optlen -= 20;
	if (optlen > MAX_IPOPT_BYTES)
		optlen = MAX_IPOPT_BYTES;
	if (bpf_skb_load_bytes(skb, 20, s.buf, optlen))
		return 0;
	s.len = optlen;
	bpf_loop(MAX_IPOPT_BYTES, scan_one_option, &s, 0);
	return s.found;
}

/* Whether an IPv6 packet carries a routing header (after at most two option headers). */
static __always_inline int ipv6_packet_source_routed(struct __sk_buff *skb)
{
	__u32 off = IPV6_HDR_BYTES;
	__u8 next, ext[2];

	if (bpf_skb_load_bytes(skb, 6, &next, 1))
		return 0;
	for (int i = 0; i < 3; i++) {
		if (next == NEXTHDR_ROUTING)
			return 1;
		if (next != NEXTHDR_HOP_BY_HOP && next != NEXTHDR_DEST_OPTS)
			return 0;
		if (bpf_skb_load_bytes(skb, off, ext, 2))
			return 0;
		next = ext[0];
		off += ((__u32)ext[1] + 1) * 8;
	}
	return 0;
}

/*
 * Source routes that never pass setsockopt: per-message ancillary data (IP_RETOPTS on
 * a UDP send) or options set before the enforcer started. Locally sent datagrams
 * leave in the sender's context, so the sender's identity decides, as at setsockopt.
 */
SEC("cgroup_skb/egress")
int enforce_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct pending p;
	struct decision d = {};
	__u8 vihl;

	/* Every packet passes here: read the version in place, no helper call. */
	if (data + 1 > end)
		return 1;
	vihl = *(__u8 *)data;
	if ((vihl >> 4) == 4 ? !ipv4_packet_source_routed(skb, vihl) :
			       (vihl >> 4) != 6 || !ipv6_packet_source_routed(skb))
		return 1;
	if (out_of_scope())
		return 1;
	start_pending(&p, PINHOLE_HOOK_EGRESS);
	p.dst.ip_version = vihl >> 4;
	/* The trail shows where the packet really goes: its first hop. */
	if (p.dst.ip_version == 4) {
		bpf_skb_load_bytes(skb, 9, &p.dst.protocol, 1);
		bpf_skb_load_bytes(skb, 16, &p.dst.addr[0], 4);
	} else {
		struct bpf_sock *sk = skb->sk ? bpf_sk_fullsock(skb->sk) : NULL;

		if (sk)
			p.dst.protocol = sk->protocol;
		bpf_skb_load_bytes(skb, 24, p.dst.addr, 16);
	}
	decide_beyond_rules(&p.exe, &d);
	return conclude(&p, &d, skb, NULL);
}

/* DNS replies to sockets that asked, read before the application can read them. */
SEC("cgroup_skb/ingress")
int enforce_ingress(struct __sk_buff *skb)
{
	if (!names_enabled)
		return 1;
	return learn_from_reply(skb);
}

#include "enforce_lsm.h"
