/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * strata-loadgen's XDP programs (compiled by loadgen/build.rs with clang -target bpf).
 *
 * loadgen_rx: on the generator's interface, hands the target's replies (IPv4 UDP from the
 * target's address and port) to the AF_XDP socket of their queue, so that they never enter the
 * kernel's stack (whose routing does not even know the simulated client addresses). Everything
 * else (ARP above all) passes to the kernel untouched.
 *
 * loadgen_sink: drops every frame; attached to the far end of a veth pair it is the cheapest
 * possible "server" for measuring how fast the generator itself can send.
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

SEC("xdp")
int loadgen_sink(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
