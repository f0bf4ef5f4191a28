/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small, bounded DNS reply parser for the enforcer: the question's name, the CNAME
 * chain from it and the A and AAAA addresses at its end, read from a copy of the
 * reply in a per-CPU buffer before the application can read the reply. The same
 * reading as recorder/src/dns.rs (which parses the trail's copy in user space):
 *
 * - names: labels of at most 63 bytes, at most 253 characters, compression pointers
 *   only to earlier bytes than any pointer followed before (so no loop), letters
 *   lowercased; a name with a byte outside [a-z0-9_-] is unusable (never matches);
 * - only records owned by a name on the chain count: a CNAME from the chain's last
 *   name extends it (at most PINHOLE_DNS_CHAIN names, a name never twice), and the
 *   addresses are those owned by its last name; records are read in order, as
 *   resolvers write them (a CNAME after the records of its target is not followed);
 * - at most PINHOLE_DNS_MAX_ANSWERS answers and PINHOLE_DNS_MAX_ADDRS addresses are
 *   read; the TTL is the smallest along the chain and its addresses.
 * Anything malformed (a cut record, a bad pointer, a long label) discards the whole
 * reply, as the user-space parser does. A reply longer than PINHOLE_DNS_MAX bytes (TCP
 * answers that did not fit a datagram) is read up to there: the records before the
 * cut count, the one across it and those after do not.
 */
#ifndef PINHOLE_DNS_PARSE_H
#define PINHOLE_DNS_PARSE_H

#include "pinhole.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>

#define PINHOLE_DNS_BUF 2048 /* a power of two above PINHOLE_DNS_MAX: offsets are masked */
#define DNS_OFF_MASK (PINHOLE_DNS_BUF - 1)
#define PINHOLE_DNS_CHAIN 5
#define PINHOLE_DNS_MAX_ANSWERS 32
#define PINHOLE_DNS_MAX_ADDRS 16
#define DNS_NAME_SLOTS 8 /* chain names, then the record owner being read */
#define DNS_OWNER_SLOT 7
#define DNS_MAX_NAME 253
#define DNS_NAME_STEPS 512 /* bytes, label lengths and pointers of one name */
#define DNS_HEADER_BYTES 12
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_AAAA 28
#define DNS_CLASS_IN 1
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* Where one name is being read from, and into which slot. */
struct name_read {
	__u32 off;
	__u32 lowest; /* a pointer must go below every place read so far */
	__u32 label_left;
	__u32 out_len;
	__u32 end; /* where the record continues after the name */
	__u64 hash;
	__u8 slot;
	__u8 done;
	__u8 err;
	__u8 odd; /* a byte no host name has */
};

/* The reply and what was read from it; one per CPU (too big for the stack). */
struct dns_parse {
	__u8 msg[PINHOLE_DNS_BUF];
	struct dns_name names[DNS_NAME_SLOTS];
	__u64 name_hash[DNS_NAME_SLOTS];
	__u32 name_len[DNS_NAME_SLOTS];
	__u8 addrs[PINHOLE_DNS_MAX_ADDRS][16];
	__u8 addr_family[PINHOLE_DNS_MAX_ADDRS];
	__u8 addr_owner[PINHOLE_DNS_MAX_ADDRS]; /* chain index of the owning name */
	__u32 len;
	__u32 chain; /* names on the chain */
	__u32 naddrs;
	__u32 ttl;
	__u32 off; /* the next record */
	__u32 answers; /* records left to read */
	__u32 skipped; /* records and addresses not used */
	/* The name being read. Kept here, not on the stack: the verifier sees map values
	 * as unknown, so it checks the reading step once instead of per offset. */
	struct name_read rd;
	__u8 bad;
	__u8 cut; /* the message goes on past the bytes copied */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dns_parse);
} dns_parse_scratch SEC(".maps");

static __always_inline struct dns_parse *dns_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&dns_parse_scratch, &zero);
}


static __always_inline int name_byte_ok(__u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static __always_inline void name_put(struct dns_parse *p, struct name_read *r, __u8 c)
{
	p->names[r->slot & (DNS_NAME_SLOTS - 1)].text[r->out_len & (PINHOLE_NAME_BYTES - 1)] = c;
	r->hash = (r->hash ^ c) * FNV_PRIME;
	r->out_len++;
}

/* One byte of a name: a label's character, a label length, the end, or a pointer. */
static long name_step(__u64 index, void *ctx)
{
	struct dns_parse *p = dns_scratch();
	struct name_read *r;
	__u8 b;

	if (!p)
		return 1;
	r = &p->rd;
	if (r->off >= p->len || r->off >= PINHOLE_DNS_MAX) {
		r->err = 1;
		return 1;
	}
	b = p->msg[r->off & DNS_OFF_MASK];
	if (r->label_left) {
		if (b >= 'A' && b <= 'Z')
			b += 'a' - 'A';
		if (!name_byte_ok(b))
			r->odd = 1;
		if (r->out_len >= DNS_MAX_NAME) {
			r->err = 1;
			return 1;
		}
		name_put(p, r, b);
		r->off++;
		r->label_left--;
		return 0;
	}
	if (b == 0) {
		if (!r->end)
			r->end = r->off + 1;
		r->done = 1;
		return 1;
	}
	if ((b & 0xc0) == 0xc0) {
		__u32 to;

		if (r->off + 1 >= p->len) {
			r->err = 1;
			return 1;
		}
		to = ((__u32)(b & 0x3f) << 8) | p->msg[(r->off + 1) & DNS_OFF_MASK];
		if (!r->end)
			r->end = r->off + 2;
		/* Forward, self and repeated pointers could loop: only ever further back. */
		if (to >= r->lowest) {
			r->err = 1;
			return 1;
		}
		r->lowest = to;
		r->off = to;
		return 0;
	}
	if (b & 0xc0) { /* the obsolete label types */
		r->err = 1;
		return 1;
	}
	if (r->out_len) {
		if (r->out_len >= DNS_MAX_NAME) {
			r->err = 1;
			return 1;
		}
		name_put(p, r, '.');
	}
	r->label_left = b;
	r->off++;
	return 0;
}

/* Reads the name at `off` into `slot`; returns where the record goes on, 0 on error. */
static __always_inline __u32 read_name(struct dns_parse *p, __u32 off, __u8 slot, __u8 *usable)
{
	struct name_read *r = &p->rd;

	__builtin_memset(r, 0, sizeof(*r));
	r->off = off;
	r->lowest = off;
	r->slot = slot;
	r->hash = FNV_OFFSET;
	__builtin_memset(p->names[slot & (DNS_NAME_SLOTS - 1)].text, 0, PINHOLE_NAME_BYTES);
	bpf_loop(DNS_NAME_STEPS, name_step, NULL, 0);
	if (!r->done || r->err || !r->out_len)
		return 0;
	p->name_hash[slot & (DNS_NAME_SLOTS - 1)] = r->hash;
	p->name_len[slot & (DNS_NAME_SLOTS - 1)] = r->out_len;
	*usable = !r->odd;
	return r->end;
}

static __always_inline __u32 rd16(const struct dns_parse *p, __u32 off)
{
	return ((__u32)p->msg[off & DNS_OFF_MASK] << 8) | p->msg[(off + 1) & DNS_OFF_MASK];
}

static __always_inline __u32 rd32(const struct dns_parse *p, __u32 off)
{
	return (rd16(p, off) << 16) | rd16(p, off + 2);
}

/* Whether the owner just read is the chain's name `i`. */
static __always_inline int owner_is(const struct dns_parse *p, __u32 i)
{
	i &= DNS_NAME_SLOTS - 1;
	return p->name_hash[DNS_OWNER_SLOT] == p->name_hash[i] &&
	       p->name_len[DNS_OWNER_SLOT] == p->name_len[i];
}

/* The chain index owning the record just read, or -1. */
static __always_inline int owner_on_chain(const struct dns_parse *p)
{
	for (int i = 0; i < PINHOLE_DNS_CHAIN; i++)
		if (i < p->chain && owner_is(p, i))
			return i;
	return -1;
}

static __always_inline void add_addr(struct dns_parse *p, __u32 rdata, __u32 len, __u8 family,
				     int owner, __u32 ttl)
{
	__u32 n = p->naddrs;

	if (n >= PINHOLE_DNS_MAX_ADDRS) {
		p->skipped++;
		return;
	}
	n &= PINHOLE_DNS_MAX_ADDRS - 1;
	__builtin_memset(p->addrs[n], 0, 16);
	for (int i = 0; i < 16; i++)
		if (i < len)
			p->addrs[n][i] = p->msg[(rdata + i) & DNS_OFF_MASK];
	p->addr_family[n] = family;
	p->addr_owner[n] = owner;
	p->naddrs++;
	if (ttl < p->ttl)
		p->ttl = ttl;
}

/* A CNAME from the chain's last name adds its target, unless the target is on it. */
static __always_inline void follow_cname(struct dns_parse *p, __u32 rdata, int owner, __u32 ttl)
{
	__u32 next = p->chain;
	__u8 usable = 0;

	if (owner != (int)next - 1 || next >= PINHOLE_DNS_CHAIN) {
		p->skipped++;
		return;
	}
	if (!read_name(p, rdata, DNS_OWNER_SLOT, &usable) || !usable) {
		p->skipped++;
		return;
	}
	if (owner_on_chain(p) >= 0)
		return; /* a loop ends the chain */
	read_name(p, rdata, next, &usable);
	p->chain = next + 1;
	if (ttl < p->ttl)
		p->ttl = ttl;
}

/* One answer record. */
static long answer_step(__u64 index, void *ctx)
{
	struct dns_parse *p = dns_scratch();
	__u32 off, type, class, ttl, rdlen, rdata;
	__u8 usable = 0;
	int owner;

	if (!p || !p->answers)
		return 1;
	p->answers--;
	off = read_name(p, p->off, DNS_OWNER_SLOT, &usable);
	if (!off || off + 10 > p->len) {
		p->bad = !p->cut;
		return 1;
	}
	type = rd16(p, off);
	class = rd16(p, off + 2);
	ttl = rd32(p, off + 4);
	rdlen = rd16(p, off + 8);
	rdata = off + 10;
	if (rdata + rdlen > p->len) {
		p->bad = !p->cut;
		return 1;
	}
	p->off = rdata + rdlen;
	owner = usable && class == DNS_CLASS_IN ? owner_on_chain(p) : -1;
	if (owner < 0) {
		p->skipped++;
		return 0;
	}
	if (type == DNS_TYPE_A && rdlen == 4)
		add_addr(p, rdata, 4, PINHOLE_FAMILY_V4, owner, ttl);
	else if (type == DNS_TYPE_AAAA && rdlen == 16)
		add_addr(p, rdata, 16, PINHOLE_FAMILY_V6, owner, ttl);
	else if (type == DNS_TYPE_CNAME)
		follow_cname(p, rdata, owner, ttl);
	return 0;
}

/*
 * Parses the `len` bytes of reply at `off` in `skb`, of a message `msg_len` bytes long.
 * Returns 0 with the chain and its
 * addresses in `p`, or -1 when there is nothing to learn from the reply (not a
 * successful answer to one question, or malformed).
 */
static __always_inline int parse_dns_reply(struct __sk_buff *skb, __u32 off, __u32 len,
					   __u32 msg_len, struct dns_parse *p)
{
	__u64 copy = len;
	__u32 flags, qend;
	__u8 usable = 0;

	if (copy > PINHOLE_DNS_MAX)
		copy = PINHOLE_DNS_MAX;
	barrier_var(copy);
	if (copy < DNS_HEADER_BYTES || copy > PINHOLE_DNS_MAX)
		return -1;
	if (bpf_skb_load_bytes(skb, off, p->msg, copy))
		return -1;
	p->len = copy;
	p->cut = msg_len > copy;
	p->chain = 0;
	p->naddrs = 0;
	p->skipped = 0;
	p->bad = 0;
	p->ttl = 0xffffffff;
	flags = rd16(p, 2);
	/* A response (QR), a standard query (opcode 0), NOERROR, one question. */
	if (!(flags & 0x8000) || (flags & 0x7800) || (flags & 0x000f) || rd16(p, 4) != 1)
		return -1;
	qend = read_name(p, DNS_HEADER_BYTES, 0, &usable);
	if (!qend || !usable || qend + 4 > p->len)
		return -1;
	p->chain = 1;
	p->off = qend + 4;
	p->answers = rd16(p, 6);
	if (p->answers > PINHOLE_DNS_MAX_ANSWERS) {
		p->skipped += p->answers - PINHOLE_DNS_MAX_ANSWERS;
		p->answers = PINHOLE_DNS_MAX_ANSWERS;
	}
	bpf_loop(PINHOLE_DNS_MAX_ANSWERS, answer_step, NULL, 0);
	if (p->bad)
		return -1;
	if (p->ttl == 0xffffffff)
		p->ttl = 0;
	return 0;
}

#endif /* PINHOLE_DNS_PARSE_H */
