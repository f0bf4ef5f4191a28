/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few kernel structures pinhole reads, declared with only the fields it uses.
 * preserve_access_index makes every access a CO-RE relocation against the running
 * kernel's BTF, so offsets come from the kernel at load time, not from this file.
 */
#ifndef PINHOLE_KERNEL_TYPES_H
#define PINHOLE_KERNEL_TYPES_H

#include <linux/types.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct super_block {
	__u32 s_dev;
};

/* Linux >= 6.11 keeps the change time as two fields. */
struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
	__s64 i_ctime_sec;
	__u32 i_ctime_nsec;
};

struct timespec64 {
	__s64 tv_sec;
	long tv_nsec;
};

/* Linux 6.6 to 6.10. */
struct inode___v66 {
	struct timespec64 __i_ctime;
};

/* Linux before 6.6. */
struct inode___old {
	struct timespec64 i_ctime;
};

struct vfsmount;
struct dentry;

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
};

struct mm_struct {
	struct file *exe_file;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

struct nsproxy {
	struct net *net_ns;
};

struct kernfs_node {
	__u64 id;
};

/* Linux >= 6.2: the ancestors, the root first and the cgroup itself last. */
struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup *ancestors[];
};

/* Linux before 6.2: the ancestors' ids. */
struct cgroup___v61 {
	__u64 ancestor_ids[0];
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

typedef struct {
	__u32 val;
} kuid_t;

typedef struct {
	__u32 val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
};

struct task_struct {
	unsigned int flags;
	int pid;
	int tgid;
	char comm[16];
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct nsproxy *nsproxy;
	struct css_set *cgroups;
	const struct cred *cred;
};

/* What the LSM hooks read of a socket and a message (enforce_lsm.h). */
struct sock_common {
	unsigned short skc_family;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};

struct socket {
	short type;
	struct sock *sk;
};

struct msghdr {
	void *msg_name;
	int msg_namelen;
	unsigned int msg_flags;
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
};

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

struct trace_event_raw_sched_process_exec {
	struct trace_entry ent;
	__u32 __data_loc_filename;
	int pid;
	int old_pid;
	char __data[0];
};

#pragma clang attribute pop

#endif /* PINHOLE_KERNEL_TYPES_H */
