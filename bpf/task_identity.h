/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who is making a call: the executable identity and process fields every pinhole
 * program records. Shared by the recorder and the enforcer so both see the same
 * identity for the same task.
 */
#ifndef PINHOLE_TASK_IDENTITY_H
#define PINHOLE_TASK_IDENTITY_H

#include "kernel_types.h"
#include "current_cgroup.h"
#include "pinhole.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

/*
 * Since Linux 6.13 (multigrain timestamps) bit 31 of i_ctime_nsec flags that the
 * time was queried; it is not part of the time. Real nanoseconds never reach it.
 */
#define PINHOLE_CTIME_NSEC_MASK 0x7fffffffU

/*
 * The reads below dereference the BTF-typed task pointer directly: the verifier turns
 * them into inline fault-tolerant loads (a NULL pointer reads as 0), far cheaper on the
 * connect path than a bpf_probe_read_kernel call per field. CO-RE relocates each field.
 */

/* Reads the change time whichever inode layout this kernel has. */
static __always_inline void read_inode_ctime(struct inode *inode, struct exe_identity *id)
{
	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		id->ctime_sec = inode->i_ctime_sec;
		id->ctime_nsec = inode->i_ctime_nsec & PINHOLE_CTIME_NSEC_MASK;
	} else if (bpf_core_field_exists(((struct inode___v66 *)inode)->__i_ctime)) {
		struct inode___v66 *v66 = (void *)inode;
		id->ctime_sec = v66->__i_ctime.tv_sec;
		id->ctime_nsec = v66->__i_ctime.tv_nsec;
	} else {
		struct inode___old *old = (void *)inode;
		id->ctime_sec = old->i_ctime.tv_sec;
		id->ctime_nsec = old->i_ctime.tv_nsec;
	}
}

/*
 * The file the task is executing (mm->exe_file), not what its path names now.
 * Kernel threads have no mm: the identity stays zero, which user space reports.
 */
static __always_inline void read_exe_identity(struct task_struct *task, struct exe_identity *id)
{
	struct mm_struct *mm = task->mm;
	struct file *exe;
	struct inode *inode;

	if (!mm)
		return;
	exe = mm->exe_file;
	if (!exe)
		return;
	inode = exe->f_inode;
	if (!inode)
		return;
	id->ino = inode->i_ino;
	id->dev = inode->i_sb->s_dev;
	read_inode_ctime(inode, id);
}

/*
 * The current task's process fields, read from the task rather than by the helpers
 * (bpf_get_current_pid_tgid, _uid_gid, _comm), which cgroup_skb programs may not call
 * before Linux 6.2.
 */
static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_task_btf()->tgid;
}

/* uid and gid (the credentials' real ids) packed as bpf_get_current_uid_gid packs them. */
static __always_inline __u64 current_uid_gid(void)
{
	const struct cred *cred = bpf_get_current_task_btf()->cred;

	return (__u64)cred->gid.val << 32 | cred->uid.val;
}

static __always_inline void read_current_comm(char *comm, __u32 size)
{
	bpf_probe_read_kernel_str(comm, size, bpf_get_current_task_btf()->comm);
}

/* Fills the process fields of a connect record from the current task. */
static __always_inline void read_current_task(struct connect_event *e)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 uid_gid = current_uid_gid();

	e->pid = task->tgid;
	e->tid = task->pid;
	e->uid = (__u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->ppid = task->real_parent->tgid;
	e->netns = task->nsproxy->net_ns->ns.inum;
	e->cgroup_id = current_cgroup_id();
	read_current_comm(e->comm, sizeof(e->comm));
	read_exe_identity(task, &e->exe);
}

#endif /* PINHOLE_TASK_IDENTITY_H */
