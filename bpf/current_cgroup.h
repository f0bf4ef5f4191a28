/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The current task's cgroup-v2 id and the id of its ancestor at a level, read from the
 * task. The helpers for both (bpf_get_current_cgroup_id, ..._ancestor_cgroup_id) are
 * refused in cgroup_skb and LSM programs before Linux 6.2 (Debian 12's 6.1 among them),
 * and every program here asks the same question, so all read it this way.
 */
#ifndef PINHOLE_CURRENT_CGROUP_H
#define PINHOLE_CURRENT_CGROUP_H

#include "kernel_types.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#define PINHOLE_MAX_CGROUP_LEVEL 255

static __always_inline struct cgroup *current_dfl_cgroup(void)
{
	return bpf_get_current_task_btf()->cgroups->dfl_cgrp;
}

static __always_inline __u64 cgroup_id_of(struct cgroup *cg)
{
	return cg ? cg->kn->id : 0;
}

/* As bpf_get_current_cgroup_id: the id of the task's cgroup in the v2 hierarchy. */
static __always_inline __u64 current_cgroup_id(void)
{
	return cgroup_id_of(current_dfl_cgroup());
}

/* As bpf_get_current_ancestor_cgroup_id: 0 when `level` is below the task's cgroup. */
static __always_inline __u64 current_ancestor_cgroup_id(__u32 level)
{
	struct cgroup *cg = current_dfl_cgroup();
	struct cgroup *ancestor = NULL;
	__u64 id = 0;

	if (!cg || level > PINHOLE_MAX_CGROUP_LEVEL || (int)level > cg->level)
		return 0;
	/* The commonest case (a task in the scope's cgroup itself) needs no read call. */
	if ((int)level == cg->level)
		return cgroup_id_of(cg);
	/* Linux 6.2 keeps the ancestors themselves; before, their ids. */
	if (bpf_core_field_exists(cg->ancestors)) {
		/* At an index known only at run time: read by a read call, whose result is a
		 * plain value the verifier does not let us follow as a pointer. */
		bpf_core_read(&ancestor, sizeof(ancestor), &cg->ancestors[level]);
		return ancestor ? BPF_CORE_READ(ancestor, kn, id) : 0;
	}
	bpf_core_read(&id, sizeof(id), &((struct cgroup___v61 *)cg)->ancestor_ids[level]);
	return id;
}

#endif /* PINHOLE_CURRENT_CGROUP_H */
