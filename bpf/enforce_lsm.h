/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The enforcer's BPF-LSM hooks (`enforce --backend lsm`), for kernels where bpf is an
 * active LSM: a process's connect, send and socket creation are decided here, host-wide
 * (--cgroup is checked per call), by the same decide_connect as the cgroup hooks. They
 * also see what no cgroup hook can: packet sockets (AF_PACKET), refused like raw ones.
 * Included by enforce.bpf.c; user space loads either these or the cgroup sock_addr
 * hooks, never both.
 *
 * Kernel workers opening MPTCP subflows call no LSM hook (kernel_connect), so the
 * cgroup connect hooks stay attached for them alone (lsm_backend below).
 */
#ifndef PINHOLE_ENFORCE_LSM_H
#define PINHOLE_ENFORCE_LSM_H

#include <bpf/bpf_tracing.h>

#define EPERM_ERRNO 1
#define AF_INET_FAMILY 2
#define AF_INET6_FAMILY 10
#define AF_PACKET_FAMILY 17
#define MSG_FASTOPEN_FLAG 0x20000000

/*
 * A link cannot switch an LSM program in place: at a reload the new generation's
 * programs attach beside the old ones and pass every call until user space makes
 * their generation the active one; then the old links go. So one policy decides
 * at every moment, never both (LSM verdicts are and-ed) and never none.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active_generation SEC(".maps");

static __always_inline int inactive_generation(void)
{
	__u32 zero = 0, *active = bpf_map_lookup_elem(&active_generation, &zero);

	return !active || *active != generation;
}

/* The sockaddr layouts, read from the kernel's copy of the caller's address. */
struct lsm_sockaddr_in {
	__u16 family;
	__u16 port;
	__u32 addr;
};

struct lsm_sockaddr_in6 {
	__u16 family;
	__u16 port;
	__u32 flowinfo;
	__u32 addr[4];
};

/* Reads an AF_INET or AF_INET6 destination; 0 when `address` is neither. */
static __always_inline int read_sockaddr(const void *address, int addrlen, struct sock_dst *d)
{
	struct lsm_sockaddr_in6 sa = {};

	if (addrlen < (int)sizeof(struct lsm_sockaddr_in) ||
	    bpf_probe_read_kernel(&sa, sizeof(struct lsm_sockaddr_in), address))
		return 0;
	d->port = bpf_ntohs(sa.port);
	if (sa.family == AF_INET_FAMILY) {
		d->ip_version = 4;
		d->addr[0] = ((struct lsm_sockaddr_in *)&sa)->addr;
		return 1;
	}
	if (sa.family != AF_INET6_FAMILY || addrlen < (int)sizeof(sa) ||
	    bpf_probe_read_kernel(&sa, sizeof(sa), address))
		return 0;
	d->ip_version = 6;
	__builtin_memcpy(d->addr, sa.addr, sizeof(d->addr));
	return 1;
}

/* An LSM hook's answer: 0 to let the call go on, -EPERM to refuse it. */
static __always_inline int lsm_result(int allowed)
{
	return allowed ? 0 : -EPERM_ERRNO;
}

/*
 * Decides a process's connect or send from `sock` to `address`. A process's connect on
 * an MPTCP socket names the connection's owner, for the subflows a worker opens later.
 */
static __always_inline int lsm_decide_dst(struct socket *sock, const void *address, int addrlen,
					  __u8 hook)
{
	struct sock *sk = sock->sk;
	struct sock_dst dst = {};
	struct pending p;
	__u32 addr[4] = {};
	__u16 protocol;
	__u8 family = PINHOLE_FAMILY_V4, in_scope;

	/* Other families (unix sockets above all) leave before anything else is read. */
	if (!sk || !read_sockaddr(address, addrlen, &dst))
		return 0;
	protocol = BPF_CORE_READ(sk, sk_protocol);
	in_scope = !out_of_scope();
	if (protocol == IPPROTO_MPTCP_PROTO) {
		remember_mptcp_owner_sk(sk, in_scope);
		/* As the cgroup hook sees it: the first subflow's TCP socket. */
		protocol = IPPROTO_TCP;
	}
	dst.protocol = protocol;
	if (!in_scope)
		return 0;
	start_pending(&p, hook);
	p.dst = dst;
	remember_name_asker(sk, dst.port, &p.exe);
	/* ::ffff:a.b.c.d reaches an IPv4 host: it is matched as IPv4, as in replay. */
	if (dst.ip_version == 6 && dst.addr[0] == 0 && dst.addr[1] == 0 &&
	    dst.addr[2] == bpf_htonl(0xffff)) {
		addr[0] = dst.addr[3];
	} else if (dst.ip_version == 6) {
		family = PINHOLE_FAMILY_V6;
		__builtin_memcpy(addr, dst.addr, sizeof(addr));
	} else {
		addr[0] = dst.addr[0];
	}
	return lsm_result(enforce_dst(&p, family, addr, sk, 0, NULL));
}

SEC("lsm/socket_connect")
int BPF_PROG(enforce_lsm_connect, struct socket *sock, void *address, int addrlen, int ret)
{
	if (ret || inactive_generation())
		return ret;
	return lsm_decide_dst(sock, address, addrlen, PINHOLE_HOOK_CONNECT);
}

/*
 * A send that names its destination: an unconnected (or re-addressed) UDP datagram, or
 * a TCP Fast Open connect. Sends on connected sockets name none and leave at once.
 */
SEC("lsm/socket_sendmsg")
int BPF_PROG(enforce_lsm_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	void *name;
	__u8 hook = PINHOLE_HOOK_SENDMSG;

	if (ret)
		return ret;
	name = BPF_CORE_READ(msg, msg_name);
	if (!name || inactive_generation())
		return 0;
	if (BPF_CORE_READ(sock, type) == 1 /* SOCK_STREAM */) {
		/* An established stream ignores the address; only Fast Open connects with it. */
		if (!(BPF_CORE_READ(msg, msg_flags) & MSG_FASTOPEN_FLAG))
			return 0;
		hook = PINHOLE_HOOK_CONNECT;
	}
	return lsm_decide_dst(sock, name, BPF_CORE_READ(msg, msg_namelen), hook);
}

/*
 * Raw IP sockets send past every connect and send hook, and packet sockets (AF_PACKET)
 * past IP altogether: both are refused to apps in enforce mode, and to unknown
 * binaries where the policy denies them (decide_beyond_rules). Kernel sockets pass.
 */
SEC("lsm/socket_create")
int BPF_PROG(enforce_lsm_create, int family, int type, int protocol, int kern, int ret)
{
	struct pending p;
	struct decision d = {};
	__u8 hook;

	if (ret || kern)
		return ret;
	if (family == AF_PACKET_FAMILY)
		hook = PINHOLE_HOOK_PACKET_SOCKET;
	else if (type == SOCK_RAW_TYPE && (family == AF_INET_FAMILY || family == AF_INET6_FAMILY))
		hook = PINHOLE_HOOK_SOCK_CREATE;
	else
		return 0;
	if (inactive_generation() || out_of_scope())
		return 0;
	start_pending(&p, hook);
	p.dst.ip_version = family == AF_INET6_FAMILY ? 6 : family == AF_INET_FAMILY ? 4 : 0;
	/* A packet socket's protocol is an ethertype, not an IP protocol: not recorded. */
	p.dst.protocol = hook == PINHOLE_HOOK_SOCK_CREATE ? protocol : 0;
	decide_beyond_rules(&p.exe, &d);
	return lsm_result(conclude(&p, &d, NULL, NULL));
}

/* An MPTCP socket is its creator's: a worker's later subflows are decided as theirs. */
SEC("lsm/socket_post_create")
int BPF_PROG(enforce_lsm_post_create, struct socket *sock, int family, int type, int protocol,
	     int kern, int ret)
{
	struct sock *sk;

	if (ret || kern || protocol != IPPROTO_MPTCP_PROTO || inactive_generation())
		return ret;
	sk = sock->sk;
	if (sk)
		remember_mptcp_owner_sk(sk, !out_of_scope());
	return 0;
}

#endif /* PINHOLE_ENFORCE_LSM_H */
