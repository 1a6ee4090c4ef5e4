/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * The XDP answer tier: a plain NTP client request answered by the program itself, the frame
 * rewritten in place and sent back with XDP_TX. Included by strata_xdp.c only.
 *
 * "Plain" is the common case and nothing else: Ethernet with 0-2 VLAN tags, IPv4 (with or
 * without options) or IPv6 without extension headers, UDP to the NTP port carrying exactly a
 * 48-byte NTP header, version 1-4, mode 3 (or mode 0 from NTPv1). Every check that
 * src/proto/frame.rs (reply_in_place) and src/proto/respond.rs (respond) make must pass here
 * too; whatever fails one of them, or is anything else (extension fields, a MAC, symmetric
 * modes, a state read that raced the control thread), is not answered here: it goes up to the
 * AF_XDP responder exactly as before, which answers or drops it with its reason counted. The
 * reply is byte for byte what reply_in_place writes for the same T2 and T3; the differential
 * test (tests/xdp_answer_diff.rs) runs this program under BPF_PROG_TEST_RUN and holds it to that.
 *
 * Checksums are summed over the words as they lie in the frame (network order): the ones'
 * complement sum does not depend on byte order (RFC 1071), so no word needs swapping.
 */
#ifndef STRATA_ANSWER_H
#define STRATA_ANSWER_H

#define NTP_PACKET_LEN 48
#define UDP_NTP_LEN (8 + NTP_PACKET_LEN)
#define REPLY_HOP_LIMIT 64
#define NTP_MODE_CLIENT 3
#define NTP_MODE_SERVER 4
/* RFC 5905's PHI: a clock's dispersion grows 15 us per second since it was last set. */
#define DISPERSION_PPM 15

#define barrier() asm volatile("" ::: "memory")

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct strata_state);
} strata_state SEC(".maps");

/* The interface's PHC-to-TAI line (struct strata_phc), written by user space's PHC thread. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct strata_phc);
} strata_phc SEC(".maps");

enum answer {
	ANSWER_TIME,      /* answered with the time: XDP_TX */
	ANSWER_UNSYNC,    /* answered LI=3, stratum 16: XDP_TX */
	ANSWER_KISS,      /* answered with admission's Kiss-o'-Death: XDP_TX */
	ANSWER_DROP,      /* unsynchronized, configured silent: XDP_DROP */
	ANSWER_NOT_PLAIN, /* not the common case: redirect, frame untouched */
	ANSWER_TORN,      /* the state changed under both reads: redirect, frame untouched */
	ANSWER_FAILED,    /* the frame could not be shortened: redirect, frame untouched */
	ANSWER_BROKEN,    /* the shortened frame failed its bounds check: drop (cannot happen) */
};

/* The ones' complement sum folded to 16 bits, end-around carry included: never 0 unless every
 * word added was 0, as src/proto/wire/checksum.rs::fold. */
static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 equation 3 for one word, as checksum::update_word. */
static __always_inline __u16 csum_update(__u16 check, __u16 old, __u16 new)
{
	return (__u16)~csum_fold((__u64)(__u16)~check + (__u16)~old + new);
}

/* The high 64 bits of the 128-bit product a * b, from 32-bit halves: BPF has no wider multiply. */
static __always_inline __u64 mul_hi64(__u64 a, __u64 b)
{
	__u64 ah = a >> 32, al = a & 0xffffffff;
	__u64 bh = b >> 32, bl = b & 0xffffffff;
	__u64 lo = al * bl, mid1 = ah * bl, mid2 = al * bh;
	__u64 carry = (lo >> 32) + (mid1 & 0xffffffff) + (mid2 & 0xffffffff);

	return ah * bh + (mid1 >> 32) + (mid2 >> 32) + (carry >> 32);
}

/* NTP fraction units (2^-32 s) in `ns` TAI nanoseconds, at the published rate. */
static __always_inline __u64 ntp_units(const struct strata_state *s, __u64 ns)
{
	return ns * s->rate_int + mul_hi64(ns, s->rate_frac);
}

#define NTP_SECOND (1ull << 32)

/* The pending leap second applied to the line's value u: src/proto/clock/scale.rs
 * (LeapScale::apply) is the definition, operation for operation. */
static __always_inline __u64 apply_leap(const struct strata_state *s, __u64 u)
{
	__u64 shift, into;

	if (s->leap_delta == 0)
		return u;
	if (s->smear_len_s) {
		into = u - s->smear_start;
		if ((__s64)into < 0)
			shift = 0;
		else if (into >= (__u64)s->smear_len_s * NTP_SECOND)
			shift = NTP_SECOND;
		else
			shift = into / (__u64)s->smear_len_s;
	} else if ((__s64)(u - s->leap_at) < 0) {
		shift = 0;
	} else {
		shift = NTP_SECOND;
	}
	return s->leap_delta > 0 ? u - shift : u + shift;
}

/* NTP time (32.32, modulo the era) of a CLOCK_TAI reading; see struct strata_state. */
static __always_inline __u64 ntp_from_tai(const struct strata_state *s, __u64 tai)
{
	__u64 u;

	if (tai >= s->tai_anchor_ns)
		u = s->ntp_anchor + ntp_units(s, tai - s->tai_anchor_ns);
	else
		u = s->ntp_anchor - ntp_units(s, s->tai_anchor_ns - tai);
	return apply_leap(s, u);
}

/* Root dispersion (NTP short, host order) at `now`: the published value grown by PHI since the
 * reference time, as respond.rs::dispersion_at computes it, with unsigned arithmetic only. */
static __always_inline __u32 dispersion_at(const struct strata_state *s, __u64 now)
{
	__u64 d, elapsed_ns, growth_ns, growth;
	__u32 sum;

	if (s->reference_time == 0)
		return s->root_dispersion;
	d = now - s->reference_time;
	/* A negative difference (now before the reference time) grows nothing. */
	if ((__s64)d <= 0)
		return s->root_dispersion;
	elapsed_ns = (d >> 32) * 1000000000ull + (((d & 0xffffffff) * 1000000000ull) >> 32);
	growth_ns = elapsed_ns / 1000000 * DISPERSION_PPM;
	/* NtpShort::from_nanos: rounded up, saturated. */
	growth = ((growth_ns << 16) + 999999999ull) / 1000000000ull;
	if (growth > 0xffffffffull)
		growth = 0xffffffffull;
	sum = s->root_dispersion + (__u32)growth;
	if (sum < s->root_dispersion)
		sum = 0xffffffff;
	return sum;
}

/* Copies the single entry of a seqlocked array map (`seq` first, odd while user space writes)
 * into *out: 1, or 0 when user space was writing during both attempts. A macro, because
 * __builtin_memcpy needs the size as a constant. */
#define READ_SEQLOCKED(map, out)                                                        \
	({                                                                              \
		__u32 key_ = 0;                                                         \
		__typeof__(out) shared_ = bpf_map_lookup_elem(&(map), &key_);          \
		int ok_ = 0;                                                            \
		if (shared_) {                                                          \
			_Pragma("unroll") for (int attempt_ = 0; attempt_ < 2; attempt_++) { \
				__u64 before_ = *(volatile __u64 *)&shared_->seq;       \
				barrier();                                              \
				if (before_ & 1)                                        \
					continue;                                       \
				__builtin_memcpy(out, shared_, sizeof(*(out)));         \
				barrier();                                              \
				if (*(volatile __u64 *)&shared_->seq == before_) {      \
					ok_ = 1;                                        \
					break;                                          \
				}                                                       \
			}                                                               \
		}                                                                       \
		ok_;                                                                    \
	})

/* Copies the published state. 0 when user space was writing during both attempts. */
static __always_inline int read_state(struct strata_state *out)
{
	return READ_SEQLOCKED(strata_state, out);
}

/* The PHC line, as read_state reads the state: 0 when two reads raced the writer. */
static __always_inline int read_phc(struct strata_phc *out)
{
	return READ_SEQLOCKED(strata_phc, out);
}

/* T2 on CLOCK_TAI of a request answered here: the NIC's stamp `hw` (0: none) through the PHC
 * line when it is usable, else the program's own stamp `now`; counted either way when the NIC
 * stamped. The AF_XDP responders do the same for what the program redirects (pipeline.rs). */
static __always_inline __u64 receive_tai(__u64 now, __u64 hw)
{
	struct strata_phc line;
	__u64 tai;

	if (!hw)
		return now;
	if (read_phc(&line) && strata_phc_tai(&line, hw, now, &tai) == 0) {
		count(STRATA_HW_MAPPED);
		return tai;
	}
	count(STRATA_HW_UNUSED);
	return now;
}

static __always_inline int mac_unicast(const __u8 *mac)
{
	/* Not group (multicast, broadcast), not all zeros: EthernetAddress::is_unicast. */
	return !(mac[0] & 1) && (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]);
}

/* An IPv4 address (network order) a reply can go to or come from (frame.rs usable_v4). */
static __always_inline int usable_v4(__u32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;

	return addr != 0 && addr != 0xffffffff && (first & 0xf0) != 0xe0 && first != 127;
}

/* The same for IPv6: not unspecified, multicast, loopback or IPv4-mapped. */
static __always_inline int usable_v6(const struct in6_addr *a)
{
	__u32 w0 = a->in6_u.u6_addr32[0], w1 = a->in6_u.u6_addr32[1];
	__u32 w2 = a->in6_u.u6_addr32[2], w3 = a->in6_u.u6_addr32[3];

	if (a->in6_u.u6_addr8[0] == 0xff)
		return 0;
	if ((w0 | w1) == 0) {
		if (w2 == 0 && (w3 == 0 || w3 == bpf_htonl(1)))
			return 0; /* :: and ::1 */
		if (w2 == bpf_htonl(0xffff))
			return 0; /* ::ffff:a.b.c.d */
	}
	return 1;
}

/* Sum of `n` 16-bit words at `p` (n a constant, p already bounds-checked for 2n bytes). */
#define SUM_WORDS(p, n)                                                                            \
	({                                                                                         \
		__u64 __s = 0;                                                                     \
		_Pragma("unroll") for (int __i = 0; __i < (n); __i++) __s += ((const __u16 *)(p))[__i]; \
		__s;                                                                               \
	})

/* Whether the request's UDP checksum is acceptable, as frame.rs decides: it verifies, or (IPv4)
 * it is zero, or it holds only the pseudo-header sum (CHECKSUM_PARTIAL from a local sender). */
static __always_inline int udp_checksum_ok(__u64 pseudo, const struct udphdr *udp, int is_v6)
{
	__u16 check = udp->check;

	if (check == 0)
		return !is_v6;
	if (csum_fold(pseudo + SUM_WORDS(udp, UDP_NTP_LEN / 2)) == 0xffff)
		return 1;
	return check == csum_fold(pseudo);
}

/* The pseudo-header sum of a 56-byte UDP datagram, raw words. */
static __always_inline __u64 pseudo_v4(const struct iphdr *ip)
{
	return (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
	       bpf_htons(IPPROTO_UDP) + bpf_htons(UDP_NTP_LEN);
}

static __always_inline __u64 pseudo_v6(const struct ipv6hdr *ip6)
{
	/* The 32 address bytes as 16 words, then next header and the 32-bit length. */
	return SUM_WORDS(&ip6->saddr, 16) + bpf_htons(IPPROTO_UDP) + bpf_htons(UDP_NTP_LEN);
}

static __always_inline void put_be64(__u8 *p, __u64 v)
{
	v = bpf_cpu_to_be64(v);
	__builtin_memcpy(p, &v, 8);
}

static __always_inline void put_be32(__u8 *p, __u32 v)
{
	v = bpf_htonl(v);
	__builtin_memcpy(p, &v, 4);
}

/* The Kiss-o'-Death code (reference ID) of a STRATA_KISS_* value, as the wire has it. */
static __always_inline __u32 kiss_code(__u32 kiss)
{
	switch (kiss) {
	case STRATA_KISS_RATE:
		return bpf_htonl(0x52415445); /* RATE */
	case STRATA_KISS_DENY:
		return bpf_htonl(0x44454e59); /* DENY */
	default:
		return bpf_htonl(0x52535452); /* RSTR */
	}
}

/* Checks that the request at l3/l4 is plain and would be answered, and answers it: with the
 * time, or with admission's Kiss-o'-Death `kiss` (STRATA_KISS_*, 0: none), as respond() does.
 * `rx_tai` is the program's receive stamp (CLOCK_TAI) and `hw` the NIC's (0: none): T2 is the
 * NIC's through the PHC line when it can be (receive_tai). `l3` and `l4` are parse()'s offsets
 * of the IP and UDP headers. `xleave`: interleaved mode is on (STRATA_CFG_XLEAVE). */
static __always_inline enum answer answer(struct xdp_md *ctx, __u64 rx_tai, __u64 hw, __u32 l3,
					  __u32 l4, int is_v6, __u32 kiss, int xleave)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct strata_state state;
	struct udphdr *udp;
	__u8 *ntp;
	__u64 pseudo, origin, t2, t3;
	__u32 ip_len, excess;
	__u8 version, mode, leap, stratum;
	int synced;

	/* Bounds the verifier can follow: at most two VLAN tags, at most 60 bytes of IPv4. */
	l3 &= 0x1f;
	l4 &= 0x7f;
	if (data + 14 > data_end || !mac_unicast(data) || !mac_unicast(data + 6))
		return ANSWER_NOT_PLAIN;
	udp = data + l4;
	if ((void *)udp + UDP_NTP_LEN > data_end)
		return ANSWER_NOT_PLAIN;
	if (udp->len != bpf_htons(UDP_NTP_LEN))
		return ANSWER_NOT_PLAIN;

	if (!is_v6) {
		struct iphdr *ip = data + l3;
		__u32 ihl, total;

		if ((void *)(ip + 1) > data_end)
			return ANSWER_NOT_PLAIN;
		ihl = ip->ihl * 4;
		total = bpf_ntohs(ip->tot_len);
		/* The datagram must fit the IP length, and the IP length the frame. */
		if (total < ihl + UDP_NTP_LEN || data + l3 + total > data_end)
			return ANSWER_NOT_PLAIN;
		{
			__u64 sum = 0;

#pragma unroll
			for (int i = 0; i < 30; i++) {
				const __u16 *word = (const void *)ip + 2 * i;

				if (2 * i >= ihl || (void *)(word + 1) > data_end)
					break;
				sum += *word;
			}
			if (csum_fold(sum) != 0xffff)
				return ANSWER_NOT_PLAIN;
		}
		if (!usable_v4(ip->saddr) || !usable_v4(ip->daddr))
			return ANSWER_NOT_PLAIN;
		pseudo = pseudo_v4(ip);
		ip_len = ihl + UDP_NTP_LEN;
	} else {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > data_end)
			return ANSWER_NOT_PLAIN;
		/* The payload length must hold the datagram and the frame the payload. */
		if (bpf_ntohs(ip6->payload_len) < UDP_NTP_LEN ||
		    (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
			return ANSWER_NOT_PLAIN;
		if (!usable_v6(&ip6->saddr) || !usable_v6(&ip6->daddr))
			return ANSWER_NOT_PLAIN;
		pseudo = pseudo_v6(ip6);
		ip_len = sizeof(*ip6) + UDP_NTP_LEN;
	}
	if (!udp_checksum_ok(pseudo, udp, is_v6))
		return ANSWER_NOT_PLAIN;

	ntp = (__u8 *)(udp + 1);
	version = (ntp[0] >> 3) & 7;
	mode = ntp[0] & 7;
	if (version < 1 || version > 4)
		return ANSWER_NOT_PLAIN;
	if (mode != NTP_MODE_CLIENT && !(mode == 0 && version == 1))
		return ANSWER_NOT_PLAIN;
	/* A request that may be interleaved, as src/proto/interleave.rs `candidate` says (NTPv4,
	 * origin's lowest bit set, receive and transmit fields differ), goes up unless admission
	 * chose a kiss: its answer needs the previous reply's transmit stamp. */
	if (xleave && !kiss && version == 4 && (ntp[31] & 1)) {
		__u64 receive, transmit;

		__builtin_memcpy(&receive, ntp + 32, 8);
		__builtin_memcpy(&transmit, ntp + 40, 8);
		if (receive != transmit)
			return ANSWER_NOT_PLAIN;
	}

	if (!read_state(&state))
		return ANSWER_TORN;
	if (!(state.flags & STRATA_STATE_VALID))
		return ANSWER_NOT_PLAIN;
	synced = state.flags & STRATA_STATE_SYNCED;
	if (!kiss && !synced && (state.flags & STRATA_STATE_UNSYNC_DROP))
		return ANSWER_DROP;

	/* Everything is checked. Cut what follows the reply (Ethernet padding, bytes after the
	 * datagram inside the IP payload); from here on the frame is the reply. */
	excess = (__u32)(data_end - data) - (l3 + ip_len);
	if (excess > 0 && bpf_xdp_adjust_tail(ctx, -(int)excess))
		return ANSWER_FAILED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	udp = data + l4;
	if (data + 14 > data_end || (void *)udp + UDP_NTP_LEN > data_end)
		return ANSWER_BROKEN;

	{
		__u8 mac[6];

		__builtin_memcpy(mac, data, 6);
		__builtin_memcpy(data, data + 6, 6);
		__builtin_memcpy(data + 6, mac, 6);
	}
	if (!is_v6) {
		struct iphdr *ip = data + l3;
		__u16 *words = (__u16 *)ip;
		__u16 old0, old1, old4, check;
		__u32 addr;

		if ((void *)(ip + 1) > data_end)
			return ANSWER_BROKEN;
		/* RFC 1624 for the three words that change: TOS (ECN cleared; a CE mark says nothing
		 * about the way back), total length, TTL. DSCP, ID, DF and options are echoed. */
		old0 = words[0];
		old1 = words[1];
		old4 = words[4];
		ip->tos &= 0xfc;
		ip->tot_len = bpf_htons(ip_len);
		ip->ttl = REPLY_HOP_LIMIT;
		check = ip->check;
		check = csum_update(check, old0, words[0]);
		check = csum_update(check, old1, words[1]);
		check = csum_update(check, old4, words[4]);
		ip->check = check;
		addr = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = addr;
	} else {
		struct ipv6hdr *ip6 = data + l3;
		struct in6_addr addr;

		if ((void *)(ip6 + 1) > data_end)
			return ANSWER_BROKEN;
		/* ECN is the low two bits of the traffic class: bits 5-4 of the second byte. */
		((__u8 *)ip6)[1] &= 0xcf;
		ip6->payload_len = bpf_htons(UDP_NTP_LEN);
		ip6->hop_limit = REPLY_HOP_LIMIT;
		__builtin_memcpy(&addr, &ip6->saddr, sizeof(addr));
		__builtin_memcpy(&ip6->saddr, &ip6->daddr, sizeof(addr));
		__builtin_memcpy(&ip6->daddr, &addr, sizeof(addr));
	}
	{
		__u16 port = udp->source;

		udp->source = udp->dest;
		udp->dest = port;
	}

	ntp = (__u8 *)(udp + 1);
	if (kiss) {
		/* A kiss tells the client nothing about our clock: every timestamp is its own. */
		__u32 code = kiss_code(kiss);

		__builtin_memcpy(&origin, ntp + 40, 8);
		ntp[0] = (3 << 6) | (version << 3) | NTP_MODE_SERVER;
		ntp[1] = 0;
		ntp[3] = (__u8)state.precision;
		put_be32(ntp + 4, 0);
		put_be32(ntp + 8, 0);
		__builtin_memcpy(ntp + 12, &code, 4);
		put_be64(ntp + 16, 0);
		__builtin_memcpy(ntp + 24, &origin, 8);
		__builtin_memcpy(ntp + 32, &origin, 8);
		udp->check = 0;
		{
			__u16 sum = ~csum_fold(pseudo + SUM_WORDS(udp, UDP_NTP_LEN / 2));

			udp->check = sum ? sum : 0xffff;
		}
		return ANSWER_KISS;
	}
	t2 = ntp_from_tai(&state, receive_tai(rx_tai, hw));
	if (synced) {
		leap = state.leap & 3;
		stratum = state.stratum;
	} else {
		leap = 3;
		stratum = 16;
	}
	__builtin_memcpy(&origin, ntp + 40, 8);
	ntp[0] = (leap << 6) | (version << 3) | NTP_MODE_SERVER;
	ntp[1] = stratum;
	/* ntp[2], the poll exponent, is echoed. */
	ntp[3] = (__u8)state.precision;
	put_be32(ntp + 4, state.root_delay);
	put_be32(ntp + 8, dispersion_at(&state, t2));
	__builtin_memcpy(ntp + 12, state.refid, 4);
	put_be64(ntp + 16, state.reference_time);
	__builtin_memcpy(ntp + 24, &origin, 8);
	/* Marked in interleaved mode (a change of 2^-32 s) so that the client's next request says
	 * which of the two it copied into its origin. */
	put_be64(ntp + 32, xleave ? t2 | 1 : t2);
	/* T3 last, then the checksum that covers it. */
	t3 = ntp_from_tai(&state, bpf_ktime_get_tai_ns());
	put_be64(ntp + 40, xleave ? t3 & ~1ULL : t3);
	udp->check = 0;
	{
		__u16 sum = ~csum_fold(pseudo + SUM_WORDS(udp, UDP_NTP_LEN / 2));

		udp->check = sum ? sum : 0xffff;
	}
	return synced ? ANSWER_TIME : ANSWER_UNSYNC;
}

#endif
