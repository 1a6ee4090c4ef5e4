/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * strata-loadgen's live mode (compiled by loadgen/build.rs with clang -target bpf).
 *
 * live_tx: run by user space with BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES)
 * with the generator's interface as the ingress device, so that XDP_TX sends each frame out of
 * it. Each run is one chance to send: a request that is not due yet (the pacing schedule in
 * live_config, against bpf_ktime_get_ns, CLOCK_MONOTONIC) is XDP_DROPped, a due one is written
 * from scratch and XDP_TXed. Pages come back recycled with whatever the far end wrote into them
 * (an XDP responder swaps addresses and ports in place), so every header field is rewritten on
 * every run.
 *
 * live_rx: attached to the generator's interface, it judges the replies in place (mode, version,
 * stratum, kiss code, timestamps, and the origin timestamp against the secret of the step, see
 * src/live/origin.rs), counts them per CPU and drops them. Anything not addressed to a simulated
 * client (ARP, the lab's own traffic) passes to the kernel.
 *
 * The origin (= the request's transmit timestamp) is 32 bits of send time (bpf_ktime_get_ns in
 * 16 ns ticks) and a 32-bit tag, a hash of that time, the client's address and port and the
 * step's secret: the receiver checks a reply without any per-request state, and its round trip
 * is the receive time less the send time. The server's response time is T3 - T2 of the reply;
 * the offset puts the send and receive times on the wall clock through a reference pair of
 * readings that user space takes at the start of each step.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NTP_LEN 48
#define EXP_TABLE 256
#define RTT_BUCKETS 304
#define INVALID_KINDS 11
#define KISS_KINDS 5
#define TICK_SHIFT 4

/* The reasons of loadgen/src/classify.rs (Invalid::index). */
#define INV_MALFORMED 0
#define INV_WRONG_SOURCE 1
#define INV_UNKNOWN_ORIGIN 2
#define INV_BAD_MODE 4
#define INV_BAD_VERSION 5
#define INV_STRATUM0_NOT_KISS 6
#define INV_UNSYNCHRONIZED 7
#define INV_ZERO_TIMESTAMP 8
#define INV_REVERSED 9

#define FLAG_POISSON 1

/* Mirrored by LiveConfig in loadgen/src/live/prog.rs. Addresses and ports in network byte
 * order where the frame has them, the client range in host order. */
struct live_config {
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u32 target_addr;
	__u16 target_port;
	__u16 flags;
	__u32 src_first; /* the first client address, host order */
	__u32 flows;
	__u32 version; /* the NTP version replies must carry */
	__u64 start_ns;
	__u64 end_ns;
	__u64 limit;
	__u64 gap_q; /* mean gap between requests, ns << 16 */
	__u64 secret;
	__u64 prev_secret;
	__u64 timeout_ns;
	/* A CLOCK_MONOTONIC reading and the NTP time (CLOCK_REALTIME, 32.32 fixed point) of the same
	 * instant, taken by user space when the step starts: they put the send and receive times on
	 * the server's scale for the offset. */
	__u64 ref_mono_ns;
	__u64 ref_ntp;
	__u8 request[NTP_LEN];
	__u32 exp_q[EXP_TABLE]; /* exponential quantiles << 16 (Poisson gaps) */
};

/* Mirrored by LiveState: written only by live_tx (one thread runs it). */
struct live_state {
	__u64 sent;
	__u64 due_q; /* the next request's due time after start, ns << 16 */
	__u64 idle;  /* runs that found nothing due */
	__u64 last_ns; /* when the last request was sent */
};

/* Mirrored by LiveCounts: one per CPU. */
struct live_counts {
	__u64 received;
	__u64 answered;
	__u64 valid;
	__u64 late;
	__u64 kod[KISS_KINDS];
	__u64 invalid[INVALID_KINDS];
	__u64 rtt[RTT_BUCKETS];
	__u64 response[RTT_BUCKETS];   /* T3 - T2 */
	__u64 offset_pos[RTT_BUCKETS]; /* ((T2 - T1) + (T3 - T4)) / 2, by sign */
	__u64 offset_neg[RTT_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct live_config);
} live_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct live_state);
} live_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct live_counts);
} live_counts SEC(".maps");

/* The origin's tag: src/live/origin.rs `tag` computes the same. */
static __always_inline __u32 origin_tag(__u32 ticks, __u32 addr, __u16 port, __u64 secret)
{
	__u64 x = secret ^ (((__u64)ticks << 32) | addr);
	x ^= (__u64)port * 0x9e3779b97f4a7c15ULL;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (__u32)x;
}

static __always_inline __u32 msb64(__u64 v)
{
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

/* Log-linear bucket of a round trip in ns: 8 per octave (src/live/origin.rs `rtt_bucket`). */
static __always_inline __u32 rtt_bucket(__u64 ns)
{
	__u32 msb;
	if (ns < 16)
		return (__u32)ns;
	if (ns >= (1ULL << 40))
		ns = (1ULL << 40) - 1;
	msb = msb64(ns);
	return 16 + (msb - 4) * 8 + (__u32)((ns >> (msb - 3)) & 7);
}

/* The magnitude of a 32.32 NTP time difference in ns. */
static __always_inline __u64 ntp_ns(__u64 mag)
{
	return (mag >> 32) * 1000000000ULL + (((mag & 0xffffffffULL) * 1000000000ULL) >> 32);
}

/* A signed 32.32 NTP time difference in ns. */
static __always_inline __s64 ntp_diff_ns(__u64 a, __u64 b)
{
	__s64 d = (__s64)(a - b);

	return d < 0 ? -(__s64)ntp_ns((__u64)-d) : (__s64)ntp_ns((__u64)d);
}

/* Counts `value` in its bucket of `hist` (RTT_BUCKETS entries). */
static __always_inline void bucket_count(__u64 *hist, __u64 value)
{
	__u32 b = rtt_bucket(value);

	/* The compiler knows b < RTT_BUCKETS and would drop the check the verifier needs. */
	asm volatile("" : "+r"(b));
	if (b < RTT_BUCKETS)
		hist[b]++;
}

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#define FRAME_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + NTP_LEN)

SEC("xdp")
int live_tx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *ntp = (void *)(udp + 1);
	struct live_config *cfg;
	struct live_state *st;
	__u32 zero = 0, g, addr, ticks, tag, sum;
	__u16 port;
	__u64 now, seq, gap;

	cfg = bpf_map_lookup_elem(&live_config, &zero);
	st = bpf_map_lookup_elem(&live_state, &zero);
	if (!cfg || !st)
		return XDP_ABORTED;
	now = bpf_ktime_get_ns();
	seq = st->sent;
	if (seq >= cfg->limit || now >= cfg->end_ns || now < cfg->start_ns ||
	    ((now - cfg->start_ns) << 16) < st->due_q) {
		st->idle++;
		return XDP_DROP;
	}
	if (ntp + NTP_LEN > (__u8 *)end)
		return XDP_ABORTED;

	gap = cfg->gap_q;
	if (cfg->flags & FLAG_POISSON)
		gap = (gap >> 16) * cfg->exp_q[bpf_get_prandom_u32() & (EXP_TABLE - 1)] +
		      (((gap & 0xffff) * cfg->exp_q[bpf_get_prandom_u32() & (EXP_TABLE - 1)]) >> 16);
	st->sent = seq + 1;
	st->due_q += gap;
	st->last_ns = now;

	/* The flow of src/transport/frame.rs SrcNet::flow: one address per flow, its own port. */
	g = cfg->flows ? (__u32)(seq % cfg->flows) : 0;
	addr = cfg->src_first + g;
	port = 1024 + (__u16)(((__u64)g * 40503) % 64000);

	__builtin_memcpy(eth->h_dest, cfg->dst_mac, 6);
	__builtin_memcpy(eth->h_source, cfg->src_mac, 6);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + sizeof(struct udphdr) + NTP_LEN);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000);
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->saddr = bpf_htonl(addr);
	ip->daddr = cfg->target_addr;
	sum = 0x4500 + sizeof(struct iphdr) + sizeof(struct udphdr) + NTP_LEN + 0x4000 +
	      (64 << 8) + IPPROTO_UDP + (addr >> 16) + (addr & 0xffff) +
	      (bpf_ntohl(cfg->target_addr) >> 16) + (bpf_ntohl(cfg->target_addr) & 0xffff);
	ip->check = bpf_htons(fold(sum));

	udp->source = bpf_htons(port);
	udp->dest = cfg->target_port;
	udp->len = bpf_htons(sizeof(struct udphdr) + NTP_LEN);
	/* No checksum: allowed for UDP over IPv4 (RFC 768), and what keeps this cheap. */
	udp->check = 0;

	__builtin_memcpy(ntp, cfg->request, NTP_LEN);
	ticks = (__u32)(now >> TICK_SHIFT);
	tag = origin_tag(ticks, addr, port, cfg->secret);
	*(__u32 *)(ntp + 40) = bpf_htonl(ticks);
	*(__u32 *)(ntp + 44) = bpf_htonl(tag);
	return XDP_TX;
}

static __always_inline __u32 kiss_index(__u8 *code)
{
	/* RATE, DENY, RSTR, NTSN as src/classify.rs kiss_label orders them; anything else "other". */
	if (code[0] == 'R' && code[1] == 'A' && code[2] == 'T' && code[3] == 'E')
		return 0;
	if (code[0] == 'D' && code[1] == 'E' && code[2] == 'N' && code[3] == 'Y')
		return 1;
	if (code[0] == 'R' && code[1] == 'S' && code[2] == 'T' && code[3] == 'R')
		return 2;
	if (code[0] == 'N' && code[1] == 'T' && code[2] == 'S' && code[3] == 'N')
		return 3;
	return 4;
}

static __always_inline int kiss_char(__u8 c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static __always_inline __u64 load_be64(__u8 *p)
{
	return ((__u64)bpf_ntohl(*(__u32 *)p) << 32) | bpf_ntohl(*(__u32 *)(p + 4));
}

SEC("xdp")
int live_rx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u8 *ntp;
	struct live_config *cfg;
	struct live_counts *c;
	__u32 zero = 0, client, ticks, tag;
	__u64 now, rtt, t2, t3;
	__s64 t1_rel, t4_rel, offset;
	__u8 mode, version, stratum, leap;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&live_config, &zero);
	c = bpf_map_lookup_elem(&live_counts, &zero);
	if (!cfg || !c)
		return XDP_PASS;
	client = bpf_ntohl(ip->daddr);
	if (client - cfg->src_first >= cfg->flows)
		return XDP_PASS;
	c->received++;
	if (ip->saddr != cfg->target_addr || udp->source != cfg->target_port) {
		c->invalid[INV_WRONG_SOURCE]++;
		return XDP_DROP;
	}
	ntp = (void *)(udp + 1);
	if (ntp + NTP_LEN > (__u8 *)end) {
		c->invalid[INV_MALFORMED]++;
		return XDP_DROP;
	}
	ticks = bpf_ntohl(*(__u32 *)(ntp + 24));
	tag = bpf_ntohl(*(__u32 *)(ntp + 28));
	if (tag != origin_tag(ticks, client, bpf_ntohs(udp->dest), cfg->secret)) {
		if (tag == origin_tag(ticks, client, bpf_ntohs(udp->dest), cfg->prev_secret))
			c->late++;
		else
			c->invalid[INV_UNKNOWN_ORIGIN]++;
		return XDP_DROP;
	}
	now = bpf_ktime_get_ns();
	rtt = (__u64)((__u32)(now >> TICK_SHIFT) - ticks) << TICK_SHIFT;
	if (rtt > cfg->timeout_ns) {
		c->late++;
		return XDP_DROP;
	}
	c->answered++;
	mode = ntp[0] & 7;
	version = (ntp[0] >> 3) & 7;
	leap = ntp[0] >> 6;
	stratum = ntp[1];
	if (mode != 4) {
		c->invalid[INV_BAD_MODE]++;
		return XDP_DROP;
	}
	if (version != cfg->version) {
		c->invalid[INV_BAD_VERSION]++;
		return XDP_DROP;
	}
	if (stratum == 0) {
		if (kiss_char(ntp[12]) && kiss_char(ntp[13]) && kiss_char(ntp[14]) && kiss_char(ntp[15])) {
			__u32 k = kiss_index(ntp + 12);

			c->kod[k < KISS_KINDS ? k : KISS_KINDS - 1]++;
		} else {
			c->invalid[INV_STRATUM0_NOT_KISS]++;
		}
		return XDP_DROP;
	}
	if (leap == 3 || stratum > 15) {
		c->invalid[INV_UNSYNCHRONIZED]++;
		return XDP_DROP;
	}
	t2 = load_be64(ntp + 32);
	t3 = load_be64(ntp + 40);
	if (t2 == 0 || t3 == 0) {
		c->invalid[INV_ZERO_TIMESTAMP]++;
		return XDP_DROP;
	}
	if ((__s64)(t3 - t2) < 0) {
		c->invalid[INV_REVERSED]++;
		return XDP_DROP;
	}
	c->valid++;
	bucket_count(c->rtt, rtt);
	bucket_count(c->response, ntp_ns(t3 - t2));
	/* All four on one scale: ns after the step's reference instant. */
	t1_rel = (__s64)(now - rtt - cfg->ref_mono_ns);
	t4_rel = (__s64)(now - cfg->ref_mono_ns);
	/* Halved by an arithmetic shift (BPF has no signed division); rounds towards -inf. */
	offset = ((ntp_diff_ns(t2, cfg->ref_ntp) - t1_rel) + (ntp_diff_ns(t3, cfg->ref_ntp) - t4_rel)) >> 1;
	if (offset < 0)
		bucket_count(c->offset_neg, (__u64)-offset);
	else
		bucket_count(c->offset_pos, (__u64)offset);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
