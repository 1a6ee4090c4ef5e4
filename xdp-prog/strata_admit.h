/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * Admission in the XDP program, for both XDP tiers: the access list (one LPM trie per family,
 * the most specific prefix wins) and the per-client rate limiter, applied to every request for
 * this server before it is answered here or redirected, so that a flood never reaches user
 * space. Included by strata_xdp.c only.
 *
 * The one definition is src/proto/admission/ (acl.rs, limiter.rs): the same client keys, the same
 * keyed hash, the same two-slot buckets and GCRA arithmetic; tests/xdp_answer_diff.rs runs
 * sequences of requests through this program (BPF_PROG_TEST_RUN) and through the Rust limiter
 * and compares the decisions. The limiter measures time on bpf_ktime_get_ns() (CLOCK_MONOTONIC),
 * which no clock step moves.
 */
#ifndef STRATA_ADMIT_H
#define STRATA_ADMIT_H

struct acl_key_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct acl_key_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STRATA_MAX_ACL_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct acl_key_v4);
	__type(value, __u8);
} strata_acl_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, STRATA_MAX_ACL_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct acl_key_v6);
	__type(value, __u8);
} strata_acl_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_admit_config);
} strata_admit SEC(".maps");

/* The limiter's table; user space sets max_entries to the configured bucket count at load. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_bucket);
} strata_limiter SEC(".maps");

/* The total cap's bucket, one per CPU (quota.rs Quota): its TAT. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} strata_quota SEC(".maps");

/* Sampled requests for `strata clients`, read by the daemon (talkers.rs). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, STRATA_SAMPLES_BYTES);
} strata_samples SEC(".maps");

enum admit {
	ADMIT_SERVE,
	ADMIT_DROP_QUOTA,
	ADMIT_DROP_DENIED,
	ADMIT_DROP_LIMITED,
	ADMIT_KISS_RATE,
	ADMIT_KISS_DENY,
	ADMIT_KISS_RSTR,
};

/* MurmurHash3's 64-bit finalizer (limiter.rs fmix64). */
static __always_inline __u64 fmix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static __always_inline __u64 load_be64(const __u8 *p)
{
	__u64 v;

	__builtin_memcpy(&v, p, 8);
	return bpf_be64_to_cpu(v);
}

/* The access list's word on the source: 1 when it is denied. */
static __always_inline int acl_denies(const struct strata_admit_config *cfg, const struct request *req)
{
	__u8 *action;

	if (!req->is_v6) {
		struct acl_key_v4 key = { .prefixlen = 32 };

		if (!(cfg->flags & STRATA_ADMIT_ACL_V4))
			return 0;
		__builtin_memcpy(key.addr, &req->src_v4, 4);
		action = bpf_map_lookup_elem(&strata_acl_v4, &key);
	} else {
		struct acl_key_v6 key = { .prefixlen = 128 };

		if (!(cfg->flags & STRATA_ADMIT_ACL_V6))
			return 0;
		__builtin_memcpy(key.addr, &req->src_v6, 16);
		action = bpf_map_lookup_elem(&strata_acl_v6, &key);
	}
	return action && *action == STRATA_ACL_DENY;
}

/* The client key (limiter.rs client_key): the source's prefix as two 64-bit halves, IPv4 as
 * an IPv4-mapped address. */
static __always_inline void client_key(const struct strata_admit_config *cfg, const struct request *req,
				       __u64 *hi, __u64 *lo)
{
	if (!req->is_v6) {
		__u64 v4 = bpf_ntohl(req->src_v4);
		__u32 p = cfg->v4_prefix;

		if (p == 0)
			v4 = 0;
		else if (p < 32)
			v4 &= (0xffffffffull << (32 - p)) & 0xffffffffull;
		*hi = 0;
		*lo = 0xffff00000000ull | v4;
	} else {
		__u64 h = load_be64(req->src_v6.in6_u.u6_addr8);
		__u64 l = load_be64(req->src_v6.in6_u.u6_addr8 + 8);
		__u32 p = cfg->v6_prefix;

		if (p == 0) {
			h = 0;
			l = 0;
		} else if (p <= 64) {
			if (p < 64)
				h &= ~0ull << (64 - p);
			l = 0;
		} else if (p < 128) {
			l &= ~0ull << (128 - p);
		}
		*hi = h;
		*lo = l;
	}
}

/* The limiter (limiter.rs Limiter::check, choose, decide). *busy is set when the client is
 * spending its burst or is over its limit (LimitDecision::busy). */
static __always_inline enum admit rate_limit(const struct strata_admit_config *cfg, const struct request *req,
					      __u64 now, int *busy)
{
	struct strata_bucket *bucket;
	struct strata_slot slot;
	__u64 hi, lo, hash, tat;
	__u32 index, tag, over, i;

	client_key(cfg, req, &hi, &lo);
	hash = fmix64(fmix64(hi ^ cfg->secret[0]) ^ lo ^ cfg->secret[1]);
	index = hash & cfg->bucket_mask;
	tag = (__u32)(hash >> 32) | 1;
	bucket = bpf_map_lookup_elem(&strata_limiter, &index);
	if (!bucket)
		return ADMIT_SERVE;
	if (bucket->slot[0].tag == tag) {
		i = 0;
		slot = bucket->slot[0];
	} else if (bucket->slot[1].tag == tag) {
		i = 1;
		slot = bucket->slot[1];
	} else {
		/* Not here: take over the slot with the earlier TAT, afresh. */
		i = bucket->slot[1].tat_ns < bucket->slot[0].tat_ns ? 1 : 0;
		count(bucket->slot[i & 1].tag ? STRATA_LIMITER_EVICTED : STRATA_LIMITER_TRACKED);
		slot.tat_ns = 0;
		slot.over = 0;
		slot.tag = tag;
	}
	tat = slot.tat_ns > now ? slot.tat_ns : now;
	*busy = slot.tat_ns > now;
	if (tat - now <= cfg->burst_span_ns) {
		slot.tat_ns = tat + cfg->interval_ns;
		if (slot.tat_ns < tat)
			slot.tat_ns = ~0ull;
		bucket->slot[i & 1] = slot;
		return ADMIT_SERVE;
	}
	*busy = 1;
	over = slot.over + 1;
	slot.over = over;
	bucket->slot[i & 1] = slot;
	if (cfg->leak && (over & ((1u << (cfg->leak & 31)) - 1)) == 0) {
		count(STRATA_LEAKED);
		return ADMIT_SERVE;
	}
	if (cfg->kod && (over & ((1u << (cfg->kod & 31)) - 1)) == 0)
		return ADMIT_KISS_RATE;
	return ADMIT_DROP_LIMITED;
}

/* Whether an answer at now to a quiet or busy client is within this CPU's share of the total
 * cap, recorded if it is (quota.rs take). */
static __always_inline int quota_take(const struct strata_admit_config *cfg, __u64 now, int busy)
{
	__u32 key = 0;
	__u64 *q = bpf_map_lookup_elem(&strata_quota, &key);
	__u64 tat, next;

	if (!q)
		return 1;
	tat = *q > now ? *q : now;
	if (tat - now > (busy ? cfg->quota_busy_span_ns : cfg->quota_quiet_span_ns))
		return 0;
	next = tat + cfg->quota_interval_ns;
	*q = next < tat ? ~0ull : next;
	return 1;
}

/* The decision for a request from req's source (proto::admission::Admitter::admit): whatever
 * would be sent, the time or a KoD, counts against the total cap. */
static __always_inline enum admit decide(const struct strata_admit_config *cfg, const struct request *req,
					 __u64 now)
{
	enum admit verdict = ADMIT_SERVE;
	int busy = 0;

	if (acl_denies(cfg, req)) {
		switch (cfg->deny_action) {
		case STRATA_DENY_KISS_DENY:
			verdict = ADMIT_KISS_DENY;
			break;
		case STRATA_DENY_KISS_RSTR:
			verdict = ADMIT_KISS_RSTR;
			break;
		default:
			return ADMIT_DROP_DENIED;
		}
		busy = 1;
	} else if (cfg->flags & STRATA_ADMIT_LIMIT) {
		verdict = rate_limit(cfg, req, now, &busy);
		if (verdict == ADMIT_DROP_LIMITED)
			return verdict;
	}
	if ((cfg->flags & STRATA_ADMIT_QUOTA) && !quota_take(cfg, now, busy))
		return ADMIT_DROP_QUOTA;
	return verdict;
}

/* 1 in 2^sample_shift requests, with their verdict, to the daemon's list of the most active
 * clients; a full ring loses the sample (counted), never the request. */
static __always_inline void sample(const struct strata_admit_config *cfg, const struct request *req,
				   enum admit verdict)
{
	struct strata_sample *s;
	__u8 code;

	if (!cfg->sample_shift || (bpf_get_prandom_u32() & ((1u << (cfg->sample_shift & 31)) - 1)))
		return;
	switch (verdict) {
	case ADMIT_SERVE:
		code = STRATA_SAMPLE_SERVED;
		break;
	case ADMIT_DROP_LIMITED:
		code = STRATA_SAMPLE_LIMITED;
		break;
	case ADMIT_DROP_DENIED:
		code = STRATA_SAMPLE_DENIED;
		break;
	case ADMIT_DROP_QUOTA:
		code = STRATA_SAMPLE_OVER_QUOTA;
		break;
	default:
		code = STRATA_SAMPLE_KISSED;
		break;
	}
	s = bpf_ringbuf_reserve(&strata_samples, sizeof(*s), 0);
	if (!s) {
		count(STRATA_SAMPLES_LOST);
		return;
	}
	client_key(cfg, req, &s->key_hi, &s->key_lo);
	s->verdict = code;
	__builtin_memset(s->pad, 0, sizeof(s->pad));
	bpf_ringbuf_submit(s, 0);
}

/* Admission for a request from req's source: the decision, sampled. */
static __always_inline enum admit admit(const struct request *req, __u64 now)
{
	__u32 key = 0;
	struct strata_admit_config *cfg = bpf_map_lookup_elem(&strata_admit, &key);
	enum admit verdict;

	if (!cfg)
		return ADMIT_SERVE;
	verdict = decide(cfg, req, now);
	sample(cfg, req, verdict);
	return verdict;
}

#endif
