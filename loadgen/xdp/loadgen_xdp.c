/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * strata-loadgen's XDP programs (compiled by loadgen/build.rs with clang -target bpf).
 *
 * loadgen_rx: on the generator's interface, hands the target's replies (IPv4 UDP from the
 * target's address and port) to the AF_XDP socket of their queue, so that they never enter the
 * kernel's stack (whose routing does not even know the simulated client addresses). Everything
 * else (ARP above all) passes to the kernel untouched.
 *
 * loadgen_sink: drops every frame (counting them per CPU); attached to the far end of a veth
 * pair it is the cheapest possible "server" for measuring how fast the generator itself can send.
 *
 * loadgen_echo: the cheapest possible NTP "server": turns every IPv4 UDP NTP client request
 * around in place (MACs, addresses and ports swapped, mode 4, stratum 1, origin = the request's
 * transmit timestamp, receive = transmit = now) and sends it back with XDP_TX, counting per CPU.
 * Swapping the addresses leaves the IP checksum as it was; the UDP checksum is set to 0
 * (allowed over IPv4). echo_config.mode can make the replies deliberately wrong, for tests of
 * the generator's validation. Everything that is not a client request passes to the kernel.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Mirrored by XdpConfig in loadgen/src/transport/xdp_prog.rs. */
struct loadgen_config {
	__u32 target_addr; /* network byte order */
	__u16 target_port; /* network byte order */
	__u16 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loadgen_config);
} loadgen_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} loadgen_xsks SEC(".maps");

SEC("xdp")
int loadgen_rx(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct loadgen_config *cfg;
	__u32 zero = 0;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	/* Fragments carry no UDP header where we would read it. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&loadgen_config, &zero);
	if (!cfg || ip->saddr != cfg->target_addr || udp->source != cfg->target_port)
		return XDP_PASS;
	return bpf_redirect_map(&loadgen_xsks, ctx->rx_queue_index, XDP_PASS);
}

/* Frames dropped by loadgen_sink or echoed by loadgen_echo, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sink_counts SEC(".maps");

/* Mirrored by EchoMode in loadgen/src/transport/xdp_prog.rs. */
#define ECHO_GOOD 0
#define ECHO_BAD_ORIGIN 1
#define ECHO_KOD 2

/* Mirrored by EchoConfig in loadgen/src/transport/xdp_prog.rs. */
struct echo_config {
	__u32 mode;
	__u32 tai_utc; /* CLOCK_TAI - CLOCK_REALTIME, seconds (0 where no one set the kernel's) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct echo_config);
} echo_config SEC(".maps");

static __always_inline void count(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sink_counts, &zero);

	if (n)
		*n += 1;
}

SEC("xdp")
int loadgen_sink(struct xdp_md *ctx)
{
	count();
	return XDP_DROP;
}

#define NTP_LEN 48
/* 1900 to 1970 in seconds. */
#define NTP_UNIX_OFFSET 2208988800ULL

SEC("xdp")
int loadgen_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u8 *ntp, mac[6];
	__u32 zero = 0, addr;
	struct echo_config *cfg;
	__u16 port;
	__u64 xmt, now, sec, frac;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (ip->frag_off & bpf_htons(0x3fff)))
		return XDP_PASS;
	udp = (void *)(ip + 1);
	ntp = (void *)(udp + 1);
	if (ntp + NTP_LEN > (__u8 *)end || (ntp[0] & 7) != 3)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&echo_config, &zero);
	if (!cfg)
		return XDP_PASS;

	__builtin_memcpy(mac, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, mac, 6);
	addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->check = 0;

	xmt = *(__u64 *)(ntp + 40);
	now = bpf_ktime_get_tai_ns() - (__u64)cfg->tai_utc * 1000000000ULL;
	sec = now / 1000000000ULL + NTP_UNIX_OFFSET;
	frac = ((now % 1000000000ULL) << 32) / 1000000000ULL;
	now = bpf_cpu_to_be64((sec << 32) | frac);

	/* Leap 0, the request's version, mode 4; stratum 1, precision 2^-20. */
	ntp[0] = (ntp[0] & 0x38) | 4;
	ntp[1] = 1;
	ntp[3] = (__u8)-20;
	__builtin_memset(ntp + 4, 0, 8);
	__builtin_memcpy(ntp + 12, "XDPE", 4);
	if (cfg->mode == ECHO_KOD) {
		ntp[1] = 0;
		__builtin_memcpy(ntp + 12, "RATE", 4);
	}
	if (cfg->mode == ECHO_BAD_ORIGIN)
		xmt ^= 0x5a5a5a5a5a5a5a5aULL;
	*(__u64 *)(ntp + 16) = now;
	*(__u64 *)(ntp + 24) = xmt;
	*(__u64 *)(ntp + 32) = now;
	*(__u64 *)(ntp + 40) = now;
	count();
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
