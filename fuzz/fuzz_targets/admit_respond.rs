//! Admission, then the answer, as the user-space tiers chain them: an admission configuration
//! (access list, what denied clients get, the rate limiter with a small table) and a sequence of
//! requests (source address, time since the last one, the request as a UDP payload or as a whole
//! Ethernet frame), each through `Admitter::admit` and then `respond()` (the socket path,
//! `sys::pipeline::Datagrams`) or `frame::reply_in_place()` (a frame, its source taken from the
//! frame itself as the XDP program takes it).
//!
//! What must always hold:
//! - nothing panics; a reply is never longer than its request; a dropped request is left as it
//!   was; a frame `request_source` does not take is not answered either;
//! - the access list is the longest matching rule (checked against a plain scan); a denied
//!   source gets nothing with `deny_action = drop` and only its KoD otherwise, never the time;
//! - the limiter: a client whose requests are all at least the interval apart is always served,
//!   whatever the others send (a spoofed flood cannot limit it); a client that was never evicted
//!   gets at most burst + elapsed / interval requests within its limit, plus the leak's share
//!   (1 in 2^leak) of the rest, and KoDs only when they are on, 1 in 2^kod at most;
//! - the table never holds more clients than were seen, and never none of a bucket used;
//! - the total cap (when on): over the run, at most 1 + (quiet span + elapsed) / interval
//!   answers, and nothing dropped for it while it is off.
//!
//! The input (short reads give zeros):
//! ```text
//! header   flags u8 (bits 0-1: deny action drop/kiss-deny/kiss-rstr/drop, 2: limiter on,
//!          3: synchronized, 4: unsynchronized policy drop, 5: total cap), buckets_log2 u8 (mod 5),
//!          burst u16le, leak u8, kod u8, v4_prefix u8, v6_prefix u8, interval u32le (ns - 1),
//!          time unit u8 (1 << (u & 31) ns), cap u16le (answers per second; bit 5 of the flags
//!          turns it on), rules u8 (mod 9)
//! rule     kind u8 (bit 0: IPv6, bit 1: deny), len u8, address (4 or 16 bytes; host bits cleared)
//! event    source u8 (bits 0-6: index into the address pool of the rules' addresses and four
//!          more, bit 7: an IPv4 source arrives IPv4-mapped on a dual-stack socket),
//!          host u8 (XORed into the address's last byte), delta u16le (time units),
//!          shape u8 (bit 0: a frame, bit 1: a valid client request followed by the payload,
//!          bits 2-3: VLAN tags), len u8, payload (len bytes), corrupt_at u8, corrupt_xor u8
//! ```
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use strata::proto::admission::limiter::{bucket_and_tag, client_hash, client_key};
use strata::proto::admission::{
    Acl, AclAction, Admitter, DenyAction, Limiter, LimiterConfig, Prefix, Quota, QuotaConfig, Verdict,
};
use strata::proto::frame::{reply_in_place, request_source, stamp_transmit_in_frame};
use strata::proto::respond::{respond, stamp_transmit, Admission, KissCode, ReplyKind};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ethernet::{EtherType, Vlan, VlanTag};
use strata::proto::wire::NtpTimestamp;
use strata_test_support::{ntp_request, Ip, RequestFrame, SERVER4, SERVER6};

const NTP_PORT: u16 = 123;
const SECRET: [u64; 2] = [0x5eed_f00d_a115_ec2e, 0x0ddb_a11c_afef_00d5];

/// Reads the input front to back; past its end every read is zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The access list as a plain scan: the longest rule of the address's family that holds it.
fn reference_lookup(rules: &[(Prefix, AclAction)], client: IpAddr) -> AclAction {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(a) => (u32::from(a) as u128, 32u8),
        IpAddr::V6(a) => (u128::from(a), 128u8),
    };
    let (value, width) = bits(client);
    rules
        .iter()
        .filter(|(p, _)| {
            let (pv, pw) = bits(p.addr);
            let shift = width - p.len.min(width);
            pw == width && (p.len == 0 || (value >> shift) == (pv >> shift))
        })
        .max_by_key(|(p, _)| p.len)
        .map_or(AclAction::Allow, |(_, a)| *a)
}

/// One limiter identity (a bucket and a tag: what the table tells apart) over the run.
#[derive(Default)]
struct Client {
    first_ns: u64,
    last_ns: u64,
    requests: u64,
    served: u64,
    kissed: u64,
    /// Every request so far at least the interval after the one before.
    well_behaved: bool,
}

fn with_last_byte(addr: IpAddr, host: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            o[3] ^= host;
            IpAddr::V4(o.into())
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            o[15] ^= host;
            IpAddr::V6(o.into())
        }
    }
}

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut input = Input(data);

    // The configuration.
    let flags = input.u8();
    let deny_action = match flags & 3 {
        1 => DenyAction::KissDeny,
        2 => DenyAction::KissRstr,
        _ => DenyAction::Drop,
    };
    let config = LimiterConfig {
        buckets_log2: input.u8() % 5,
        burst: u32::from(input.u16()),
        leak: input.u8(),
        kod: input.u8(),
        v4_prefix: input.u8(),
        v6_prefix: input.u8(),
        interval_ns: u64::from(input.u32()) + 1,
    };
    let unit_shift = input.u8() & 31;
    let cap = (flags & 32 != 0).then(|| QuotaConfig::share_of(u32::from(input.u16()), 1));
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = flags & 8 != 0;
    if flags & 16 != 0 {
        state.unsync_policy = UnsyncPolicy::Drop;
    }
    state.stratum = 2;
    state.reference_time = NtpTimestamp(0xe98a_1b20_0000_0000);

    let mut acl = Acl::default();
    let mut rules: Vec<(Prefix, AclAction)> = Vec::new();
    let mut pool: Vec<IpAddr> = Vec::new();
    for _ in 0..input.u8() % 9 {
        let kind = input.u8();
        let len = input.u8();
        let action = if kind & 2 != 0 {
            AclAction::Deny
        } else {
            AclAction::Allow
        };
        let (addr, len) = if kind & 1 == 0 {
            let len = len % 33;
            let a = input.u32();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (IpAddr::V4(Ipv4Addr::from(a & mask)), len)
        } else {
            let len = len % 129;
            let mut o = [0u8; 16];
            o.copy_from_slice(&[input.bytes(16), &[0u8; 16]].concat()[..16]);
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
            (IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(o) & mask)), len)
        };
        let prefix = Prefix::new(addr, len).expect("host bits were cleared");
        // As the configuration does: the same prefix both allowed and denied is refused.
        if acl.add(prefix, action).is_ok() && !rules.iter().any(|(p, _)| *p == prefix) {
            rules.push((prefix, action));
        }
        pool.push(addr);
    }
    assert_eq!(acl.rules(), &rules[..]);
    pool.extend([
        IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0x8000, 0, 0, 0, 0x10)),
    ]);

    let limiter_on = flags & 4 != 0;
    let admitter = Admitter::new(acl, deny_action)
        .limited(limiter_on.then(|| Limiter::new(config, SECRET)))
        .capped(cap.map(Quota::new));
    // Whatever the rules say, the cap may drop it instead.
    let or_capped = |verdict: Verdict, expected: Verdict| {
        verdict == expected || (cap.is_some() && verdict == Verdict::DropQuota)
    };
    let mut answered = 0u64;

    // The requests.
    let mut now_ns = 0u64;
    let mut clients: HashMap<(usize, u32), Client> = HashMap::new();
    let mut tags: HashMap<usize, Vec<u32>> = HashMap::new();
    let tx = NtpTimestamp(0xe98a_1b2d_0000_1000);
    let rx = NtpTimestamp(0xe98a_1b2d_0000_0000);
    while !input.is_empty() {
        let source = input.u8();
        let host = input.u8();
        now_ns += u64::from(input.u16()) << unit_shift;
        let shape = input.u8();
        let len = input.u8() as usize;
        let given = input.bytes(len).to_vec();
        let (corrupt_at, corrupt_xor) = (input.u8(), input.u8());

        let addr = with_last_byte(pool[(source & 0x7f) as usize % pool.len()], host);
        let mut payload = if shape & 2 != 0 {
            ntp_request().to_vec()
        } else {
            Vec::new()
        };
        payload.extend_from_slice(&given);

        // Where the request comes from as admission sees it, and the buffer it arrives in.
        let (client, mut buf) = if shape & 1 == 0 {
            // The socket path (sys::pipeline::Pipeline::admit): the sender as the receive call
            // gave it, an IPv4 client on a dual-stack socket IPv4-mapped, and judged as IPv4.
            let from = match addr {
                IpAddr::V4(a) if source & 0x80 != 0 => IpAddr::V6(a.to_ipv6_mapped()),
                a => a,
            };
            let client = match from {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from, IpAddr::V4),
                ip => ip,
            };
            (Some(client), payload)
        } else {
            let tag = |vid| VlanTag::new(EtherType::VLAN, 0, false, vid);
            let mut spec = RequestFrame::v4();
            spec.vlan = match (shape >> 2) & 3 {
                0 | 3 => Vlan::Untagged,
                1 => Vlan::Single(tag(7)),
                _ => Vlan::Double {
                    outer: VlanTag::new(EtherType::QINQ, 0, false, 100),
                    inner: tag(7),
                },
            };
            spec.ip = match addr {
                IpAddr::V4(src) if source & 0x80 == 0 => Ip::V4 {
                    src,
                    dst: SERVER4,
                    options: Vec::new(),
                },
                // An IPv4-mapped source never appears on the wire: the frame checks refuse it.
                IpAddr::V4(src) => Ip::V6 {
                    src: src.to_ipv6_mapped(),
                    dst: SERVER6,
                },
                IpAddr::V6(src) => Ip::V6 { src, dst: SERVER6 },
            };
            spec.payload = payload;
            let mut frame = spec.build();
            if corrupt_xor != 0 {
                let at = corrupt_at as usize % frame.len();
                frame[at] ^= corrupt_xor;
            }
            // As the XDP program: admission judges the frame's own source, and only a frame
            // that is a request to us gets that far.
            let client = request_source(&frame, NTP_PORT).map(|(from, _)| from.ip());
            (client, frame)
        };
        let request = buf.clone();
        let is_frame = shape & 1 != 0;

        let Some(client) = client else {
            // Not a request (the XDP program passes it on): not answered either.
            assert!(reply_in_place(&mut buf, rx, tx, Admission::Serve, &state, NTP_PORT).is_err());
            assert_eq!(buf, request);
            continue;
        };

        // Admission.
        let denied = reference_lookup(&rules, client) == AclAction::Deny;
        assert_eq!(
            admitter.rules().acl.lookup(client) == AclAction::Deny,
            denied,
            "{client}"
        );
        let verdict = admitter.admit(client, now_ns);
        match (denied, deny_action) {
            (true, DenyAction::Drop) => assert_eq!(verdict, Verdict::DropDenied),
            (true, DenyAction::KissDeny) => assert!(
                or_capped(verdict, Verdict::Answer(Admission::Kiss(KissCode::Deny))),
                "{verdict:?}"
            ),
            (true, DenyAction::KissRstr) => assert!(
                or_capped(verdict, Verdict::Answer(Admission::Kiss(KissCode::Rstr))),
                "{verdict:?}"
            ),
            (false, _) if !limiter_on => {
                assert!(
                    or_capped(verdict, Verdict::Answer(Admission::Serve)),
                    "{verdict:?}"
                )
            }
            (false, _) => {
                assert!(
                    matches!(
                        verdict,
                        Verdict::Answer(Admission::Serve | Admission::Kiss(KissCode::Rate))
                            | Verdict::DropLimited
                    ) || or_capped(verdict, Verdict::DropLimited),
                    "{verdict:?}"
                );
                if config.kod == 0 {
                    assert_ne!(verdict, Verdict::Answer(Admission::Kiss(KissCode::Rate)));
                }
                let key = client_key(client, config.v4_prefix, config.v6_prefix);
                let (bucket, tag) = bucket_and_tag(client_hash(key, SECRET), config.buckets_log2);
                let seen = tags.entry(bucket).or_default();
                if !seen.contains(&tag) {
                    seen.push(tag);
                }
                let c = clients.entry((bucket, tag)).or_insert_with(|| Client {
                    first_ns: now_ns,
                    well_behaved: true,
                    ..Client::default()
                });
                if c.requests > 0 && now_ns - c.last_ns < config.interval_ns {
                    c.well_behaved = false;
                }
                c.requests += 1;
                c.last_ns = now_ns;
                match verdict {
                    Verdict::Answer(Admission::Serve) => c.served += 1,
                    Verdict::Answer(Admission::Kiss(_)) => c.kissed += 1,
                    _ => {}
                }
                // A client that keeps to its interval is never limited, whatever the others do.
                if c.well_behaved {
                    assert!(
                        or_capped(verdict, Verdict::Answer(Admission::Serve)),
                        "{client} at {now_ns}: {verdict:?}"
                    );
                }
            }
        }
        if matches!(verdict, Verdict::Answer(_)) {
            answered += 1;
        }

        // The answer.
        let Some(admission) = verdict.admission() else {
            continue;
        };
        let (len, kind) = if is_frame {
            match reply_in_place(&mut buf, rx, tx, admission, &state, NTP_PORT) {
                Ok(reply) => {
                    stamp_transmit_in_frame(&mut buf[..reply.len], &reply, NtpTimestamp(1));
                    (reply.len, reply.kind)
                }
                Err(_) => {
                    assert_eq!(buf, request);
                    continue;
                }
            }
        } else {
            match respond(&mut buf, rx, tx, admission, &state) {
                Ok(reply) => {
                    if !matches!(reply.kind, ReplyKind::Kiss(_)) {
                        stamp_transmit(&mut buf[..reply.len], NtpTimestamp(1));
                    }
                    (reply.len, reply.kind)
                }
                Err(_) => {
                    assert_eq!(buf, request);
                    continue;
                }
            }
        };
        assert!(
            len <= request.len(),
            "a reply of {len} bytes to {}",
            request.len()
        );
        match admission {
            Admission::Kiss(code) => assert_eq!(kind, ReplyKind::Kiss(code)),
            Admission::Serve => assert!(!matches!(kind, ReplyKind::Kiss(_))),
        }
        if denied {
            assert!(matches!(kind, ReplyKind::Kiss(KissCode::Deny | KissCode::Rstr)));
        }
    }

    // The cap over the whole run: the first answer, the quiet span's worth back to back, then
    // one per interval.
    if let Some(cap) = cap {
        let most = 1 + (cap.quiet_span_ns + now_ns) / cap.interval_ns;
        assert!(
            answered <= most,
            "{answered} answers under a cap of {most} over {now_ns} ns"
        );
    }

    // The limiter over the whole run.
    let Some(limiter) = &admitter.limiter else {
        return;
    };
    let burst = u64::from(config.burst.max(1));
    let share = |n: u64, shift: u8| if shift == 0 { 0 } else { n >> shift.min(31) };
    for ((bucket, _), c) in &clients {
        if tags[bucket].len() > 2 {
            // This client may have been forgotten and started afresh: no bound to hold it to.
            continue;
        }
        // Within the limit: the burst, then one per interval; the leak answers 1 in 2^leak of
        // the rest. served = within + leak(requests - within) grows with `within`, so its
        // largest possible value bounds it.
        let within = (burst + (c.last_ns - c.first_ns) / config.interval_ns).min(c.requests);
        let most = within + share(c.requests - within, config.leak);
        assert!(
            c.served <= most,
            "{} served of {} over {} ns, at most {most}",
            c.served,
            c.requests,
            c.last_ns - c.first_ns
        );
        assert!(
            c.kissed <= share(c.requests, config.kod),
            "{} KoDs of {}",
            c.kissed,
            c.requests
        );
    }
    let occupied = limiter.occupied();
    assert!(
        occupied <= clients.len(),
        "{occupied} slots for {} clients",
        clients.len()
    );
    assert!(
        occupied >= tags.len(),
        "{occupied} slots for {} buckets used",
        tags.len()
    );
}
