/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Start-up snapshot: one task_record per running process (thread group leaders with
 * an executable), so processes that started before pinhole are identified too. The
 * path is read from /proc by user space: bpf_d_path on task->mm->exe_file is refused
 * by newer verifiers (an untrusted pointer; 6.18 here), and a refused iterator left
 * every running process unseen.
 */
#include "kernel_types.h"
#include <linux/bpf.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "pinhole.h"
#include "task_identity.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct task_record _task_record = {};

SEC("iter/task")
int snapshot_tasks(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct task_record rec = {};

	if (!task || task->pid != task->tgid || !BPF_CORE_READ(task, mm, exe_file))
		return 0;
	rec.pid = task->tgid;
	rec.ppid = BPF_CORE_READ(task, real_parent, tgid);
	read_exe_identity(task, &rec.exe);
	bpf_seq_write(seq, &rec, sizeof(rec));
	return 0;
}
