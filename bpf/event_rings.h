/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The rings every pinhole program hands records to user space through, and the
 * per-CPU count of what could not be handed over (the kernel keeps none).
 */
#ifndef PINHOLE_EVENT_RINGS_H
#define PINHOLE_EVENT_RINGS_H

#include "pinhole.h"
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>

/* Connects are frequent: submitted without wakeup, drained on a user-space timer. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} connect_events SEC(".maps");

/* Execs are rare and urgent: user space must open /proc/<pid>/exe while it lives. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} exec_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PINHOLE_LOST_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/* Dummy instances put the record layouts into BTF so the skeleton generates them. */
struct connect_event _connect_event = {};
struct dns_event _dns_event = {};
struct exec_event _exec_event = {};

static __always_inline void count_lost(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&lost_events, &slot);

	if (n)
		*n += 1;
}

#endif /* PINHOLE_EVENT_RINGS_H */
