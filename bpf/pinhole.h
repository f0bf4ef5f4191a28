/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Records shared between pinhole's BPF programs and user space. This header is the
 * single definition: the Rust side uses the skeleton's generated types for them.
 */
#ifndef PINHOLE_H
#define PINHOLE_H

#define PINHOLE_COMM_LEN 16
#define PINHOLE_PATH_LEN 256

/* Which sock_addr hook saw the destination. */
enum pinhole_hook {
	PINHOLE_HOOK_CONNECT = 1,
	PINHOLE_HOOK_SENDMSG = 2,
	PINHOLE_HOOK_SOCK_CREATE = 3, /* a raw socket being opened (enforcer only) */
	PINHOLE_HOOK_SETSOCKOPT = 4, /* a source route being set (enforcer only) */
	PINHOLE_HOOK_EGRESS = 5, /* a packet carrying a source route (enforcer only) */
	PINHOLE_HOOK_MPTCP_SUBFLOW = 6, /* a subflow the kernel opens for an MPTCP connection */
	PINHOLE_HOOK_DNS_ANSWER = 7, /* a DNS reply to a socket that asked (recorder) */
	PINHOLE_HOOK_PACKET_SOCKET = 8, /* a packet socket being opened (enforcer, LSM backend) */
};

/* What the program decided; the recorder only ever observes. */
enum pinhole_verdict {
	PINHOLE_VERDICT_OBSERVED = 0,
	PINHOLE_VERDICT_ALLOWED = 1,
	PINHOLE_VERDICT_DENIED = 2,
	PINHOLE_VERDICT_WOULD_DENY = 3,
};

/* Index of each loss counter in the per-CPU `lost_events` array. */
enum pinhole_lost_slot {
	PINHOLE_LOST_CONNECT = 0,
	PINHOLE_LOST_EXEC = 1,
	PINHOLE_LOST_DNS = 2,
	PINHOLE_LOST_SLOTS = 3,
};

/* Index of each counter in the enforcer's per-CPU `name_stats` array. */
enum pinhole_name_stat {
	PINHOLE_NAMES_REPLIES = 0, /* replies parsed */
	PINHOLE_NAMES_UNREADABLE = 1, /* replies the kernel parser refused (malformed, cut) */
	PINHOLE_NAMES_EVIDENCE_ADDED = 2, /* (receiver, address) entries created */
	PINHOLE_NAMES_SLOT_EVICTIONS = 3, /* names pushed out of a full entry while valid */
	PINHOLE_NAMES_ID_FULL = 4, /* names that got no id (tables full) */
	PINHOLE_NAMES_LOST_NAME = 5, /* a connect met a name id whose text was evicted */
	PINHOLE_NAMES_SKIPPED_ANSWERS = 6, /* answers past PINHOLE_DNS_MAX_ANSWERS, or unusable */
	PINHOLE_NAMES_STATS = 7,
};

/*
 * The executable a task is running, as the kernel sees it. `dev` is the kernel's
 * encoding (major << 20 | minor); user space converts before comparing with st_dev.
 */
struct exe_identity {
	__u64 ino;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 dev;
};

/* Where a connect or send goes, as the sock_addr hook saw it. */
struct sock_dst {
	__u32 addr[4]; /* network byte order; IPv4 uses addr[0] */
	__u16 port; /* host byte order */
	__u8 ip_version; /* 4 or 6: the socket's family */
	__u8 protocol; /* IPPROTO_* */
};

/* One outbound connect or unconnected UDP send. */
struct connect_event {
	__u64 boot_ns; /* CLOCK_BOOTTIME */
	__u64 cgroup_id;
	__u64 sock_cookie;
	struct exe_identity exe;
	__u32 pid; /* thread group id, what user space calls the pid */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 netns; /* inode number of the task's network namespace */
	struct sock_dst dst;
	__u8 hook; /* enum pinhole_hook */
	__u8 verdict; /* enum pinhole_verdict */
	__u16 _pad;
	__u32 app_id; /* enforcer: the policy's app (1-based), 0 for an unknown binary */
	__u32 rule; /* enforcer: global rule number (1-based), 0 for none */
	__u32 generation; /* enforcer: which loaded policy decided */
	__u32 name_id; /* enforcer: the name whose rule allowed it (name_texts), 0: none */
	char comm[PINHOLE_COMM_LEN];
};

/* Bytes of a DNS message copied to user space: the EDNS size most resolvers use. */
#define PINHOLE_DNS_MAX 1232

/*
 * A DNS reply arriving at a socket that sent to port 53. `asker` is the process that
 * sent the query (its connect or send record, kept in the socket's storage), with
 * boot_ns the reply's arrival, dst the server, and hook PINHOLE_HOOK_DNS_ANSWER.
 * `data` holds the DNS message (for TCP, a segment's bytes after the length prefix).
 */
struct dns_event {
	struct connect_event asker;
	__u16 len; /* bytes copied into data */
	__u16 msg_len; /* the message's length (longer than len: cut) */
	__u8 tcp;
	__u8 _pad[3];
	__u8 data[PINHOLE_DNS_MAX];
};

/* Why an exec_event was sent. */
enum pinhole_exec_reason {
	PINHOLE_EXEC_NEW = 0, /* a completed execve */
	PINHOLE_EXEC_UNKNOWN = 1, /* enforcer: a connect by an executable it has no hash for */
};

/* A completed execve: the task now runs `exe`, named `filename` by the caller. */
struct exec_event {
	__u64 boot_ns;
	struct exe_identity exe;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 reason; /* enum pinhole_exec_reason */
	char comm[PINHOLE_COMM_LEN];
	char filename[PINHOLE_PATH_LEN];
};

/* One running process, written by the start-up task iterator. */
struct task_record {
	struct exe_identity exe;
	__u32 pid;
	__u32 ppid;
};

/* ---- Enforcer tables, filled by user space from a compiled policy ---- */

enum pinhole_app_mode {
	PINHOLE_MODE_ENFORCE = 0,
	PINHOLE_MODE_AUDIT = 1,
};

enum pinhole_unknown_action {
	PINHOLE_UNKNOWN_ALLOW = 0,
	PINHOLE_UNKNOWN_DENY = 1,
	PINHOLE_UNKNOWN_AUDIT = 2,
};

#define PINHOLE_FAMILY_V4 4
#define PINHOLE_FAMILY_V6 6

/* Which app a file is: (device, inode), valid only while its change time is `ctime`. */
struct identity_key {
	__u64 ino;
	__u32 dev; /* kernel encoding */
	__u32 _pad;
};

struct identity_value {
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 app_id;
};

/*
 * Destination trie key. The fixed part (app, protocol, family, padding) is always
 * matched whole; prefixlen = PINHOLE_DEST_FIXED_BITS + the address prefix length.
 * IPv4 uses the first four address bytes.
 */
struct dest_key {
	__u32 prefixlen;
	__u32 app_id;
	__u8 protocol; /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_ICMP (ICMPv6 folded in) */
	__u8 family; /* PINHOLE_FAMILY_V4 or _V6 */
	__u16 _pad;
	__u8 addr[16];
};

#define PINHOLE_DEST_FIXED_BITS 64

/* A trie node's sorted, disjoint port spans: port_spans[start .. start + count). */
struct span_range {
	__u32 start;
	__u32 count;
};

struct port_span {
	__u16 lo;
	__u16 hi;
	__u32 rule;
	/* 0: `rule` is unscoped. Else 1 + the index in rule_chains of the span's rules in
	 * the matcher's order (`rule` first), up to an unscoped one or a 0. */
	__u32 chain;
};

/* Rules a chain holds at most, and user or group ids a scope lists at most. */
#define PINHOLE_MAX_CHAIN 8
#define PINHOLE_SCOPE_IDS 8

/* Who and until when a rule applies (matcher items 9-10); only scoped rules have one. */
struct rule_scope {
	__u64 expires_ns; /* CLOCK_BOOTTIME; 0: never */
	__u64 cgroup_id; /* the subtree's root; 0 with has_cgroup: not there now, never holds */
	__u32 cgroup_level; /* its depth below the cgroup-v2 root */
	__u8 has_cgroup;
	__u8 nuids;
	__u8 ngids;
	__u8 _pad;
	__u32 uids[PINHOLE_SCOPE_IDS];
	__u32 gids[PINHOLE_SCOPE_IDS];
};

/* Binary search over at most 65,536 spans. */
#define PINHOLE_MAX_SEARCH_STEPS 17

enum pinhole_dns_scope {
	PINHOLE_SCOPE_APP = 0,
	PINHOLE_SCOPE_HOST = 1,
};

struct app_info {
	__u32 mode; /* enum pinhole_app_mode */
	__u32 dns_scope; /* enum pinhole_dns_scope */
	/* The first 8 bytes of the app's SHA-256: who received a DNS answer, stable across
	 * reloads (app ids are not). */
	__u64 sha_tag;
};

/* ---- Names: DNS evidence and name rules (enforcer) ---- */

/* A name as text: lowercase, dotted, no root dot, zero-padded. Name tables key the
 * policy's names reversed byte for byte ("moc.elpmaxe"), so that every parent domain
 * of a name is a prefix of its key. */
#define PINHOLE_NAME_BYTES 256
struct dns_name {
	char text[PINHOLE_NAME_BYTES];
};

/* Who received an answer: an app by its hash tag, a binary outside the policy by its
 * file, or the host's resolver. */
enum pinhole_receiver_kind {
	PINHOLE_RECEIVER_APP = 1,
	PINHOLE_RECEIVER_FILE = 2,
	PINHOLE_RECEIVER_HOST = 3,
};

struct evidence_key {
	__u64 who; /* sha tag, or inode */
	__u32 dev; /* the file's device (kernel encoding); 0 otherwise */
	__u8 kind; /* enum pinhole_receiver_kind */
	__u8 family; /* PINHOLE_FAMILY_V4 or _V6 */
	__u16 _pad;
	__u8 addr[16];
};

#define PINHOLE_EVIDENCE_SLOTS 8

/* One name vouching for the address until `until_ns` (CLOCK_BOOTTIME). */
struct evidence_slot {
	__u64 until_ns;
	__u32 name_id;
	__u32 _pad;
};

struct evidence_value {
	struct evidence_slot slots[PINHOLE_EVIDENCE_SLOTS];
};

/* What one name matches under the loaded policy: the policy's name patterns (ids the
 * policy's tables use) and the global deny entry hitting it (a rule number, 0: none). */
#define PINHOLE_NAME_PATTERNS 8
struct name_match {
	__u32 count;
	__u32 global_deny;
	__u32 patterns[PINHOLE_NAME_PATTERNS];
};

/* A name of the policy (key: reversed text). `exact`: the pattern "this name", `under`:
 * "any name below it" (0 when the policy has none); the deny fields: the global deny
 * entry (rule number) hitting the name itself, or names below it. */
struct name_pattern {
	__u32 exact;
	__u32 under;
	__u32 deny_exact;
	__u32 deny_under;
};

/* A deny prefix of the policy (key: the prefix, not reversed). */
struct name_prefix {
	__u32 pattern;
	__u32 global_deny;
};

/* An app's rules for one pattern and protocol (protocol 0: the app's deny entry). */
struct name_rule_key {
	__u32 app_id;
	__u32 pattern;
	__u8 protocol;
	__u8 _pad[3];
};

struct name_rule_value {
	__u32 start; /* the rules' port spans: port_spans[start .. start + count) */
	__u32 count;
	__u32 deny; /* protocol 0: the deny entry's rule number */
};

#define PINHOLE_MAX_PREFIX_LENS 16

/* Per app (index 0: unknown binaries), per CPU. */
struct verdict_counters {
	__u64 allowed;
	__u64 denied;
	__u64 would_deny;
};

#endif /* PINHOLE_H */
