/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * strata's XDP program: answer plain NTP client requests for this server itself (XDP_TX, see
 * strata_answer.h) when the config map says so; steer every other NTP request into the AF_XDP
 * socket of the queue it arrived on, with a receive timestamp in the metadata area; pass
 * everything else to the kernel untouched (ARP, ND, SSH, the control thread's upstream replies,
 * which come *from* port 123 to an ephemeral port).
 *
 * Built twice by build.rs (see there for why):
 *   strata_xdp.o            plain: the stamp is bpf_ktime_get_tai_ns() at XDP time;
 *   strata_xdp_devbound.o   -DSTRATA_DEV_BOUND: also asks the NIC for its hardware receive
 *                           stamp with the bpf_xdp_metadata_rx_timestamp kfunc, which the
 *                           verifier only allows in a program loaded bound to one device.
 *
 * The pipeline is parse -> classify (port, destination) -> [admit] -> answer (plain requests,
 * XDP_TX; see strata_answer.h) -> stamp -> redirect (everything else). The
 * access list (an LPM trie on the source) and the per-source rate limiter of a later issue
 * go where strata_xdp() marks it: the parsed source address is already in struct request for
 * them, and their drop reasons extend enum strata_counter.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "strata_xdp.h"
#include "strata_phc.h"

#define NTP_HEADER_LEN 48
#define MAX_VLAN_TAGS 2

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STRATA_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} strata_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STRATA_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} strata_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_config);
} strata_config SEC(".maps");

/* The server's own addresses (network byte order); see STRATA_CFG_CHECK_*. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STRATA_MAX_ADDRS);
	__type(key, __u32);
	__type(value, __u8);
} strata_addrs_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STRATA_MAX_ADDRS);
	__type(key, struct in6_addr);
	__type(value, __u8);
} strata_addrs_v6 SEC(".maps");

#ifdef STRATA_DEV_BOUND
extern int bpf_xdp_metadata_rx_timestamp(const struct xdp_md *ctx, __u64 *timestamp) __ksym;
#endif

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* What parse() learned about a request; the source stays here for admit(). */
struct request {
	int is_v6;
	__u32 src_v4;
	struct in6_addr src_v6;
	__u16 src_port;
	/* Offsets of the IP and UDP headers in the frame, for answer(). */
	__u32 l3;
	__u32 l4;
};

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&strata_counters, &index);

	if (value)
		*value += 1; /* per-CPU: no other writer */
}

#include "strata_admit.h"
#include "strata_answer.h"

enum verdict { NOT_OURS, OURS, DROP_SHORT, DROP_SRC_PORT_ZERO };

/* A mode-6 message's header (RFC 9327). */
#define NTP_CONTROL_HEADER_LEN 12

static __always_inline int is_local_v4(const struct strata_config *cfg, __u32 addr)
{
	if (!(cfg->flags & STRATA_CFG_CHECK_V4))
		return 1;
	return bpf_map_lookup_elem(&strata_addrs_v4, &addr) != NULL;
}

static __always_inline int is_local_v6(const struct strata_config *cfg, const struct in6_addr *addr)
{
	if (!(cfg->flags & STRATA_CFG_CHECK_V6))
		return 1;
	return bpf_map_lookup_elem(&strata_addrs_v6, addr) != NULL;
}

/* Checks the UDP header at `udp` (already bounds-checked) against the port and length. */
static __always_inline enum verdict classify_udp(const struct udphdr *udp, void *data_end,
						 const struct strata_config *cfg, struct request *req)
{
	if (udp->dest != cfg->ntp_port_be)
		return NOT_OURS;
	if ((void *)(udp + 1) + NTP_HEADER_LEN > data_end) {
		/* Mode 6 (ntpq, check_ntp_peer) is shorter than an NTP header: a 12-byte header
		 * and its data. It goes up, where the control thread answers monitoring addresses. */
		const __u8 *ntp = (const __u8 *)(udp + 1);

		if ((void *)(ntp + NTP_CONTROL_HEADER_LEN) > data_end || (ntp[0] & 7) != 6)
			return DROP_SHORT;
	}
	if (udp->source == 0)
		return DROP_SRC_PORT_ZERO;
	req->src_port = udp->source;
	return OURS;
}

static __always_inline enum verdict parse(struct xdp_md *ctx, const struct strata_config *cfg,
					  struct request *req)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return NOT_OURS;
	proto = eth->h_proto;
	cursor = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vlan = cursor;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vlan + 1) > data_end)
			return NOT_OURS;
		proto = vlan->encapsulated_proto;
		cursor = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		__u32 ihl;

		if ((void *)(ip + 1) > data_end)
			return NOT_OURS;
		if (ip->version != 4 || ip->protocol != IPPROTO_UDP)
			return NOT_OURS;
		/* Fragments go to the kernel: strata never reassembles. */
		if (ip->frag_off & bpf_htons(0x3fff))
			return NOT_OURS;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip) || ihl > 60)
			return NOT_OURS;
		if (cursor + ihl + sizeof(struct udphdr) > data_end)
			return NOT_OURS;
		if (!is_local_v4(cfg, ip->daddr))
			return NOT_OURS;
		req->is_v6 = 0;
		req->src_v4 = ip->saddr;
		req->l3 = cursor - data;
		req->l4 = cursor + ihl - data;
		return classify_udp(cursor + ihl, data_end, cfg, req);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) + sizeof(struct udphdr) > data_end)
			return NOT_OURS;
		/* UDP right after the fixed header only; extension headers are not walked. */
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return NOT_OURS;
		if (!is_local_v6(cfg, &ip6->daddr))
			return NOT_OURS;
		req->is_v6 = 1;
		__builtin_memcpy(&req->src_v6, &ip6->saddr, sizeof(req->src_v6));
		req->l3 = cursor - data;
		req->l4 = (void *)(ip6 + 1) - data;
		return classify_udp((void *)(ip6 + 1), data_end, cfg, req);
	}
	return NOT_OURS;
}

/* The NIC's receive stamp of the frame, in its PHC's time; 0 when there is none (a zero stamp,
 * as veth gives, or an error: -EOPNOTSUPP, -ENODATA), and always in the plain program. */
static __always_inline __u64 hardware_stamp(struct xdp_md *ctx)
{
	__u64 hw = 0;

#ifdef STRATA_DEV_BOUND
	if (bpf_xdp_metadata_rx_timestamp(ctx, &hw) != 0)
		hw = 0;
#endif
	if (hw)
		count(STRATA_HW_STAMPED);
	return hw;
}

/* Writes the receive stamps (the program's, the NIC's `hw`), and admission's KoD (0: none),
 * into the metadata area. Returns 0 when there was no room. */
static __always_inline int stamp(struct xdp_md *ctx, __u64 tai_ns, __u64 hw, __u32 kiss)
{
	struct strata_meta *meta;
	void *data;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct strata_meta)))
		return 0;
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(meta + 1) > data)
		return 0;
	meta->xdp_tai_ns = tai_ns;
	meta->hw_ns = hw;
	meta->magic = STRATA_META_MAGIC;
	meta->flags = (hw ? STRATA_META_HW : 0) | kiss << STRATA_META_KISS_SHIFT;
	return 1;
}

SEC("xdp")
int strata_xdp(struct xdp_md *ctx)
{
	/* Read first: the closest this program gets to the moment the frame arrived. */
	__u64 now = bpf_ktime_get_tai_ns();
	struct request req = {};
	struct strata_config *cfg;
	__u64 hw;
	__u32 key = 0, kiss = 0;
	long action;

	count(STRATA_SEEN);
	cfg = bpf_map_lookup_elem(&strata_config, &key);
	if (!cfg)
		return XDP_PASS;

	switch (parse(ctx, cfg, &req)) {
	case NOT_OURS:
		count(STRATA_PASSED);
		return XDP_PASS;
	case DROP_SHORT:
		count(STRATA_DROP_SHORT);
		return XDP_DROP;
	case DROP_SRC_PORT_ZERO:
		count(STRATA_DROP_SRC_PORT_ZERO);
		return XDP_DROP;
	case OURS:
		break;
	}
	/* Admission first: a denied or limited source costs nothing more. */
	switch (admit(&req, bpf_ktime_get_ns())) {
	case ADMIT_SERVE:
		break;
	case ADMIT_DROP_DENIED:
		count(STRATA_DROP_DENIED);
		return XDP_DROP;
	case ADMIT_DROP_LIMITED:
		count(STRATA_DROP_LIMITED);
		return XDP_DROP;
	case ADMIT_DROP_QUOTA:
		count(STRATA_DROP_QUOTA);
		return XDP_DROP;
	case ADMIT_KISS_RATE:
		count(STRATA_KOD_RATE);
		kiss = STRATA_KISS_RATE;
		break;
	case ADMIT_KISS_DENY:
		count(STRATA_KOD_DENY);
		kiss = STRATA_KISS_DENY;
		break;
	case ADMIT_KISS_RSTR:
		count(STRATA_KOD_RSTR);
		kiss = STRATA_KISS_RSTR;
		break;
	}
	hw = hardware_stamp(ctx);
	if (cfg->flags & STRATA_CFG_ANSWER) {
		switch (answer(ctx, now, hw, req.l3, req.l4, req.is_v6, kiss)) {
		case ANSWER_TIME:
			count(STRATA_ANSWERED);
			return XDP_TX;
		case ANSWER_UNSYNC:
			count(STRATA_ANSWERED_UNSYNC);
			return XDP_TX;
		case ANSWER_KISS:
			return XDP_TX;
		case ANSWER_DROP:
			count(STRATA_DROP_UNSYNC);
			return XDP_DROP;
		case ANSWER_TORN:
			count(STRATA_STATE_TORN);
			break;
		case ANSWER_FAILED:
			count(STRATA_ANSWER_FAILED);
			break;
		case ANSWER_BROKEN:
			count(STRATA_ANSWER_FAILED);
			return XDP_DROP;
		case ANSWER_NOT_PLAIN:
			break;
		}
	}
	if (!stamp(ctx, now, hw, kiss))
		count(STRATA_META_FAILED);

	/* The low bits of the flags are the action when the queue has no socket: pass. */
	action = bpf_redirect_map(&strata_xsks, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT)
		count(STRATA_REDIRECTED);
	else
		count(STRATA_REDIRECT_FAILED);
	return action;
}

/* GPL-compatible because the kernel refuses kfunc calls (the hardware stamp) from programs
 * that are not; see xdp-prog/README.md. */
char _license[] SEC("license") = "Dual BSD/GPL";
