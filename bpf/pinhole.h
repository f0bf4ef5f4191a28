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
	PINHOLE_LOST_SLOTS = 2,
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
	__u32 dst_addr[4]; /* network byte order; IPv4 uses dst_addr[0] */
	__u16 dst_port; /* host byte order */
	__u8 ip_version; /* 4 or 6: the socket's family */
	__u8 protocol; /* IPPROTO_* */
	__u8 hook; /* enum pinhole_hook */
	__u8 verdict; /* enum pinhole_verdict */
	__u16 _pad;
	char comm[PINHOLE_COMM_LEN];
};

/* A completed execve: the task now runs `exe`, named `filename` by the caller. */
struct exec_event {
	__u64 boot_ns;
	struct exe_identity exe;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u32 _pad;
	char comm[PINHOLE_COMM_LEN];
	char filename[PINHOLE_PATH_LEN];
};

/* One running process, written by the start-up task iterator. */
struct task_record {
	struct exe_identity exe;
	__u32 pid;
	__u32 ppid;
	char path[PINHOLE_PATH_LEN];
};

#endif /* PINHOLE_H */
