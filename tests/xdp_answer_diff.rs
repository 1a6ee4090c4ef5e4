//! One behaviour, two implementations: the XDP program's answer tier (xdp-prog/strata_answer.h)
//! against `reply_in_place` (src/proto/frame.rs), on the same frames and the same published
//! state. The program is loaded as strata loads it (attached to a veth in a namespace of the
//! test's own) and run on each frame with BPF_PROG_TEST_RUN; the control thread's side is played
//! by `StateMap` with a clock that has a nonzero offset and frequency.
//!
//! For every frame:
//! - XDP_TX: `reply_in_place`, given the T2 and T3 the program wrote, answers too, with the same
//!   bytes and length; T2 and T3 lie between the clock read before and after the run; the
//!   checksums verify; and the request was plain (a 48-byte NTP payload).
//! - XDP_DROP or XDP_PASS (a redirect with no socket behind it): the frame is unchanged, and
//!   `reply_in_place` either drops it too or answers a request that is not plain (extension
//!   fields, a MAC), which the AF_XDP responder will answer. A plain request `reply_in_place`
//!   answers is never left to AF_XDP; a drop is never a frame `reply_in_place` would answer.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use strata::proto::clock::{ClockParams, LeapScale};
use strata::proto::frame::{edit_ntp_in_frame, reply_in_place, FrameReply};
use strata::proto::interleave::{candidate, mark};
use strata::proto::respond::{Admission, ReplyKind};
use strata::proto::state::{Published, ServerState, UnsyncPolicy};
use strata::proto::wire::ethernet::{EtherType, EthernetAddress, Vlan, VlanTag};
use strata::proto::wire::{checksum, ipv4, ipv6, ntp, udp, NtpShort, NtpTimestamp};
use strata::sys::clock::{kernel_tai_offset, read_clock_ns};
use strata::sys::fastpath::abi::{XdpCounter, META_LEN, META_MAGIC};
use strata::sys::fastpath::state_map::{encode, StateMap};
use strata::sys::fastpath::{AdmissionOptions, Interface, ProgramOptions, XdpProgram};
use strata_test_support::*;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

/// One run of the program on `frame`: its verdict and the frame as it left.
fn test_run(prog: BorrowedFd<'_>, frame: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 1024];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        data_out: out.as_mut_ptr().cast(),
        data_size_out: out.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: `opts` points at `frame` and `out` with their true lengths, both alive for the
    // call; the kernel writes at most data_size_out bytes into `out`.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    assert_eq!(rc, 0, "BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    out.truncate(opts.data_size_out as usize);
    (opts.retval, out)
}

fn tai_now() -> u64 {
    read_clock_ns(libc::CLOCK_TAI) as u64
}

/// A clock the control thread has corrected: 12.3 s ahead, 37.5 ppm fast since 100 s ago.
fn corrected_clock() -> ClockParams {
    let tai = kernel_tai_offset();
    ClockParams {
        tai_minus_utc: tai,
        base_ns: read_clock_ns(libc::CLOCK_REALTIME) - 100_000_000_000,
        offset_ns: 12_345_678_901,
        frequency_q48: ClockParams::frequency_q48_from_ppm(37.5),
        leap: Default::default(),
    }
}

/// The synchronized state, its reference time a minute before now on the corrected clock (so
/// that replies grow the dispersion).
fn synced_state(clock: &ClockParams) -> ServerState {
    let now = clock.ntp_from_tai(tai_now() as i64);
    ServerState {
        reference_time: now.add_nanos(-60_000_000_000),
        leap: ntp::Leap::AddSecond,
        ..synced()
    }
}

/// The program loaded and attached in a namespace of its own, and its state map.
struct Tier {
    program: XdpProgram,
    map: StateMap,
    published: Published,
    /// Interleaved mode is on (`ProgramOptions::interleaved`): the AF_XDP pipeline's marks are
    /// expected on the program's replies, and interleaved requests are left to AF_XDP.
    interleaved: bool,
}

impl Tier {
    fn publish(&mut self, published: Published) {
        self.published = published;
        self.map.write(&encode(&published, tai_now()));
    }

    /// Runs `frame` through the program and through `reply_in_place`, and holds them to each
    /// other (see the file's documentation). Returns the verdict.
    fn check(&self, frame: &[u8]) -> u32 {
        self.check_admitted(frame, Some(Admission::Serve))
    }

    /// [`Tier::check`] for a request that admission answers with `admission`, or drops (None).
    fn check_admitted(&self, frame: &[u8], admission: Option<Admission>) -> u32 {
        let prog = self.program.program_fd().unwrap();
        let before = tai_now();
        let (verdict, out) = test_run(prog, frame);
        let after = tai_now();

        let mut theirs = frame.to_vec();
        let (t2, t3) = if verdict == XDP_TX {
            let ntp_at = out.len() - ntp::HEADER_LEN;
            let reply = ntp::Packet::new_unchecked(&out[ntp_at..]);
            (reply.receive_timestamp(), reply.transmit_timestamp())
        } else {
            (NtpTimestamp(1), NtpTimestamp(2))
        };
        let Some(admission) = admission else {
            assert_eq!(verdict, XDP_DROP, "admission drops it: {frame:02x?}");
            assert_eq!(out, frame, "a dropped frame was changed");
            return verdict;
        };
        let kiss = matches!(admission, Admission::Kiss(_));
        let rust = reply_in_place(&mut theirs, t2, t3, admission, &self.published.server, 123);
        // What the AF_XDP pipeline would take for an interleaved request (read off the request).
        let candidate = self.interleaved && ntp_payload(frame).and_then(candidate).is_some();
        match verdict {
            XDP_TX => {
                let reply: FrameReply = rust.unwrap_or_else(|e| {
                    panic!("XDP answered what reply_in_place drops ({e:?}): {frame:02x?}")
                });
                assert!(
                    kiss || !candidate,
                    "XDP answered an interleaved request: {frame:02x?}"
                );
                // Marked as the pipeline marks its time replies in interleaved mode.
                if self.interleaved && matches!(reply.kind, ReplyKind::Time | ReplyKind::Unsynchronized) {
                    edit_ntp_in_frame(&mut theirs, &reply, mark);
                }
                assert_eq!(
                    &out[..],
                    &theirs[..reply.len],
                    "the replies differ for {frame:02x?}"
                );
                assert_eq!(
                    ntp_payload_len(frame),
                    Some(48),
                    "XDP answered a request that is not plain"
                );
                // T2 and T3 on the published clock between the reads around the run; the line
                // is within a few ns of ClockParams itself (tests of LinearNtp), allow 5.
                let lo = self.published.clock.ntp_from_tai(before as i64).add_nanos(-5);
                let hi = self.published.clock.ntp_from_tai(after as i64).add_nanos(5);
                for (name, t) in [("T2", t2), ("T3", t3)].into_iter().filter(|_| !kiss) {
                    assert!(
                        t.diff_nanos(lo) >= 0 && hi.diff_nanos(t) >= 0,
                        "{name} {t:?} not within [{lo:?}, {hi:?}]"
                    );
                }
                assert!(t3.diff_nanos(t2) >= 0, "T3 before T2");
                assert_checksums(&out);
            }
            XDP_DROP | XDP_PASS => {
                // A redirected frame carries its receive stamp in front (the metadata area,
                // which BPF_PROG_TEST_RUN returns with the data).
                let out = match out.len().checked_sub(META_LEN) {
                    Some(len) if len == frame.len() => {
                        let magic = u32::from_ne_bytes(out[16..20].try_into().unwrap());
                        assert_eq!(magic, META_MAGIC);
                        out[META_LEN..].to_vec()
                    }
                    _ => out,
                };
                assert_eq!(out, frame, "a frame the program did not answer was changed");
                if let Ok(reply) = rust {
                    assert!(
                        verdict == XDP_PASS && (ntp_payload_len(frame) != Some(48) || (candidate && !kiss)),
                        "reply_in_place answers ({:?}) what XDP {} for {frame:02x?}",
                        reply.kind,
                        if verdict == XDP_DROP {
                            "dropped"
                        } else {
                            "left to AF_XDP"
                        },
                    );
                }
            }
            other => panic!("unexpected verdict {other}"),
        }
        verdict
    }
}

/// The UDP payload length of a frame that parses down to UDP, else None.
fn ntp_payload_len(frame: &[u8]) -> Option<usize> {
    let (l4, _) = locate_udp(frame)?;
    let len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]) as usize;
    len.checked_sub(8)
}

/// The UDP payload as its header's length says, when the frame holds it.
fn ntp_payload(frame: &[u8]) -> Option<&[u8]> {
    let (l4, _) = locate_udp(frame)?;
    frame.get(l4 + 8..l4 + 8 + ntp_payload_len(frame)?)
}

/// The UDP header's offset and whether the frame is IPv4, following the Ethernet and IP
/// headers only as far as their lengths (no validity checks).
fn locate_udp(frame: &[u8]) -> Option<(usize, bool)> {
    let mut at = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    }
    let l3 = at + 2;
    match ethertype {
        0x0800 => Some((l3 + (*frame.get(l3)? as usize & 0xf) * 4, true)),
        0x86dd => Some((l3 + 40, false)),
        _ => None,
    }
}

fn assert_checksums(reply: &[u8]) {
    let (l4, is_v4) = locate_udp(reply).unwrap();
    let l3 = ip_start(reply);
    let datagram = udp::Packet::new_checked(&reply[l4..]).unwrap();
    if is_v4 {
        let ip = ipv4::Packet::new_checked(&reply[l3..]).unwrap();
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert!(datagram.checksum() != 0);
        assert!(
            datagram.verify_checksum_v4(ip.src_addr(), ip.dst_addr()),
            "UDP checksum"
        );
    } else {
        let ip = ipv6::Packet::new_checked(&reply[l3..]).unwrap();
        assert!(
            datagram.verify_checksum_v6(&ip.src_addr(), &ip.dst_addr()),
            "UDP checksum"
        );
    }
}

/// Where the IP header starts, after the Ethernet header and its VLAN tags.
fn ip_start(frame: &[u8]) -> usize {
    let mut at = 12;
    while matches!(u16::from_be_bytes([frame[at], frame[at + 1]]), 0x8100 | 0x88a8) {
        at += 4;
    }
    at + 2
}

/// Sets the UDP checksum of a built frame to `value(pseudo-header sum)`.
fn set_udp_checksum(frame: &mut [u8], value: impl Fn(u16) -> u16) {
    let (l4, is_v4) = locate_udp(frame).unwrap();
    let len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]);
    let l3 = ip_start(frame);
    let pseudo = if is_v4 {
        let ip = ipv4::Packet::new_unchecked(&frame[l3..]);
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 17, len)
    } else {
        let ip = ipv6::Packet::new_unchecked(&frame[l3..]);
        checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), 17, len as u32)
    };
    frame[l4 + 6..l4 + 8].copy_from_slice(&value(pseudo).to_be_bytes());
}

/// Runs `body` with the program loaded on a veth in a namespace of its own.
fn with_tier(body: impl FnOnce(&mut Tier) + Send + 'static) {
    with_admitting_tier(AdmissionOptions::default(), body)
}

/// [`with_tier`], the program admitting requests as `admission` says.
fn with_admitting_tier(admission: AdmissionOptions, body: impl FnOnce(&mut Tier) + Send + 'static) {
    with_configured_tier(admission, false, body)
}

/// [`with_admitting_tier`], with interleaved mode on or off in the program.
fn with_configured_tier(
    admission: AdmissionOptions,
    interleaved: bool,
    body: impl FnOnce(&mut Tier) + Send + 'static,
) {
    let a = Netns::new("diff-a");
    let b = Netns::new("diff-b");
    a.veth("srv0", "198.18.0.2/26", &b, "cli0", "198.18.0.1/26");
    a.run_in(move || {
        let iface = Interface::lookup("srv0").unwrap();
        let options = ProgramOptions {
            ntp_port: 123,
            force: false,
            answer: true,
            interleaved,
            admission,
        };
        // No addresses: the program takes every destination as its own, as for a wildcard.
        let mut program = XdpProgram::load(&iface, &[], &options).unwrap();
        program.attach(false).unwrap();
        let map = program.state_map().unwrap();
        let clock = corrected_clock();
        let published = Published {
            server: synced_state(&clock),
            clock,
        };
        let mut tier = Tier {
            program,
            map,
            published,
            interleaved,
        };
        tier.publish(published);
        body(&mut tier);
    });
    drop(b);
}

fn requires_root() -> bool {
    Netns::available()
}

fn v4_with(payload: Vec<u8>) -> RequestFrame {
    RequestFrame {
        payload,
        ..RequestFrame::v4()
    }
}

const OUTER: VlanTag = VlanTag::new(EtherType::QINQ, 1, false, 100);
const INNER: VlanTag = VlanTag::new(EtherType::VLAN, 3, true, 200);

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn hand_written_frames_get_the_same_answer_from_both_tiers() {
    if !requires_root() {
        return;
    }
    with_tier(|tier| {
        let mut answered = 0;
        // Every version and mode, LI set too (a client's LI is ignored).
        for first in 0..=255u8 {
            for base in [RequestFrame::v4(), RequestFrame::v6()] {
                let mut payload = ntp_request().to_vec();
                payload[0] = first;
                let frame = RequestFrame { payload, ..base }.build();
                if tier.check(&frame) == XDP_TX {
                    answered += 1;
                }
            }
        }
        // Versions 1-4 with mode 3, and NTPv1's mode 0: 4 LI x 5 x 2 families.
        assert_eq!(answered, 4 * 5 * 2);

        let mut cases: Vec<(&str, Vec<u8>, u32)> = Vec::new();
        let plain = |f: RequestFrame| f.build();
        cases.push(("v4", plain(RequestFrame::v4()), XDP_TX));
        cases.push(("v6", plain(RequestFrame::v6()), XDP_TX));
        for (name, vlan) in [
            ("vlan", Vlan::Single(INNER)),
            (
                "qinq",
                Vlan::Double {
                    outer: OUTER,
                    inner: INNER,
                },
            ),
        ] {
            cases.push((
                name,
                plain(RequestFrame {
                    vlan,
                    ..RequestFrame::v4()
                }),
                XDP_TX,
            ));
            cases.push((
                name,
                plain(RequestFrame {
                    vlan,
                    ..RequestFrame::v6()
                }),
                XDP_TX,
            ));
        }
        for options in [vec![1, 1, 1, 0], vec![1; 40]] {
            let f = RequestFrame {
                ip: Ip::V4 {
                    src: CLIENT4,
                    dst: SERVER4,
                    options,
                },
                ..RequestFrame::v4()
            };
            cases.push(("ipv4 options", f.build(), XDP_TX));
        }
        cases.push((
            "ecn and dscp",
            plain(RequestFrame {
                dscp: 46,
                ecn: 3,
                hop_limit: 3,
                flow_label: 0xabcde,
                ..RequestFrame::v6()
            }),
            XDP_TX,
        ));
        cases.push((
            "ecn v4",
            plain(RequestFrame {
                dscp: 10,
                ecn: 3,
                hop_limit: 1,
                ..RequestFrame::v4()
            }),
            XDP_TX,
        ));
        cases.push((
            "padded",
            plain(RequestFrame {
                padding: 6,
                ..RequestFrame::v4()
            }),
            XDP_TX,
        ));
        cases.push((
            "padded v6",
            plain(RequestFrame {
                padding: 20,
                ..RequestFrame::v6()
            }),
            XDP_TX,
        ));
        cases.push(("short", plain(v4_with(ntp_request()[..47].to_vec())), XDP_DROP));
        cases.push(("empty", plain(v4_with(Vec::new())), XDP_DROP));
        let mut long = ntp_request().to_vec();
        long.push(0);
        cases.push(("49 bytes", plain(v4_with(long)), XDP_PASS));
        let mut mac = ntp_request().to_vec();
        mac.extend_from_slice(&[0; 20]);
        cases.push(("mac", plain(v4_with(mac)), XDP_PASS));
        let mut ext = ntp_request().to_vec();
        ext.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
        ext.extend_from_slice(&[0xaa; 12]);
        ext.extend_from_slice(&[0; 20]);
        cases.push(("extension field", plain(v4_with(ext)), XDP_PASS));
        cases.push((
            "source port 0",
            plain(RequestFrame {
                src_port: 0,
                ..RequestFrame::v4()
            }),
            XDP_DROP,
        ));
        cases.push((
            "other port",
            plain(RequestFrame {
                dst_port: 124,
                ..RequestFrame::v4()
            }),
            XDP_PASS,
        ));
        for (name, src, dst) in [
            ("multicast source", [224, 0, 0, 1], [198, 18, 0, 1]),
            ("broadcast source", [255, 255, 255, 255], [198, 18, 0, 1]),
            ("loopback source", [127, 0, 0, 1], [198, 18, 0, 1]),
            ("unspecified source", [0, 0, 0, 0], [198, 18, 0, 1]),
            ("multicast destination", [198, 19, 1, 2], [239, 1, 2, 3]),
        ] {
            let f = RequestFrame {
                ip: Ip::V4 {
                    src: src.into(),
                    dst: dst.into(),
                    options: vec![],
                },
                ..RequestFrame::v4()
            };
            cases.push((name, f.build(), XDP_PASS));
        }
        for (name, src) in [
            ("v6 multicast source", "ff02::1"),
            ("v6 loopback source", "::1"),
            ("v6 unspecified source", "::"),
            ("v4-mapped source", "::ffff:198.19.1.2"),
        ] {
            let f = RequestFrame {
                ip: Ip::V6 {
                    src: src.parse().unwrap(),
                    dst: SERVER6,
                },
                ..RequestFrame::v6()
            };
            cases.push((name, f.build(), XDP_PASS));
        }
        for (name, mac) in [
            ("broadcast MAC", EthernetAddress([0xff; 6])),
            ("multicast MAC", EthernetAddress([0x01, 0, 0x5e, 0, 0, 1])),
            ("zero MAC", EthernetAddress([0; 6])),
        ] {
            cases.push((
                name,
                plain(RequestFrame {
                    src_mac: mac,
                    ..RequestFrame::v4()
                }),
                XDP_PASS,
            ));
            cases.push((
                name,
                plain(RequestFrame {
                    dst_mac: mac,
                    ..RequestFrame::v4()
                }),
                XDP_PASS,
            ));
        }
        // Checksums: none (IPv4 only), partial (a local sender over veth), wrong.
        let mut zero = RequestFrame::v4().build();
        set_udp_checksum(&mut zero, |_| 0);
        cases.push(("v4 no checksum", zero, XDP_TX));
        let mut zero6 = RequestFrame::v6().build();
        set_udp_checksum(&mut zero6, |_| 0);
        cases.push(("v6 zero checksum", zero6, XDP_PASS));
        for base in [RequestFrame::v4(), RequestFrame::v6()] {
            let mut partial = base.build();
            set_udp_checksum(&mut partial, |pseudo| pseudo);
            cases.push(("partial checksum", partial, XDP_TX));
            let mut wrong = base.build();
            set_udp_checksum(&mut wrong, |pseudo| pseudo ^ 0x0101);
            cases.push(("wrong checksum", wrong, XDP_PASS));
        }
        let mut bad_ip = RequestFrame::v4().build();
        bad_ip[14 + 10] ^= 0xff;
        cases.push(("bad IP checksum", bad_ip, XDP_PASS));
        let mut fragment = RequestFrame::v4().build();
        fragment[14 + 6] |= 0x20; // more fragments
        let check = u16::from_be_bytes([fragment[24], fragment[25]]);
        let fixed = checksum::update_word(check, 0x4000, 0x6000);
        fragment[24..26].copy_from_slice(&fixed.to_be_bytes());
        cases.push(("fragment", fragment, XDP_PASS));
        // An IP payload longer than the datagram (the UDP length rules).
        let mut longer = RequestFrame::v4().build();
        longer.extend_from_slice(&[0; 8]);
        let total = u16::from_be_bytes([longer[16], longer[17]]);
        longer[16..18].copy_from_slice(&(total + 8).to_be_bytes());
        let check = u16::from_be_bytes([longer[24], longer[25]]);
        let fixed = checksum::update_word(check, total, total + 8);
        longer[24..26].copy_from_slice(&fixed.to_be_bytes());
        cases.push(("ip payload beyond udp", longer, XDP_TX));
        let mut truncated = RequestFrame::v4().build();
        truncated.truncate(80);
        cases.push(("truncated", truncated, XDP_DROP));
        let mut arp = RequestFrame::v4().build();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        cases.push(("not ip", arp, XDP_PASS));

        for (name, frame, verdict) in &cases {
            assert_eq!(tier.check(frame), *verdict, "{name}");
        }

        // Unsynchronized: answered LI=3 stratum 16, or dropped, as configured.
        let mut unsync = tier.published;
        unsync.server.synchronized = false;
        tier.publish(unsync);
        for (name, frame, verdict) in &cases {
            assert_eq!(tier.check(frame), *verdict, "unsynchronized, answering: {name}");
        }
        unsync.server.unsync_policy = UnsyncPolicy::Drop;
        tier.publish(unsync);
        for (name, frame, verdict) in &cases {
            let expected = if *verdict == XDP_TX { XDP_DROP } else { *verdict };
            assert_eq!(tier.check(frame), expected, "unsynchronized, dropping: {name}");
        }
        // Never published (a program whose control thread has not written yet): nothing is
        // answered in XDP, everything goes up.
        tier.map.write(&Default::default());
        for (name, frame, verdict) in &cases {
            let expected = if *verdict == XDP_TX { XDP_PASS } else { *verdict };
            assert_eq!(tier.check(frame), expected, "never published: {name}");
        }
        let counters = tier.program.counters().unwrap();
        assert!(counters.get(XdpCounter::Answered) > 0);
        assert!(counters.get(XdpCounter::AnsweredUnsync) > 0);
        assert!(counters.get(XdpCounter::DropUnsync) > 0);
    });
}

/// Frames of every shape the tier answers, then bytes changed at random.
fn frames() -> impl Strategy<Value = Vec<u8>> {
    let vlan = prop_oneof![
        Just(Vlan::Untagged),
        Just(Vlan::Single(INNER)),
        Just(Vlan::Double {
            outer: OUTER,
            inner: INNER
        })
    ];
    let ip = prop_oneof![
        (0usize..=10).prop_map(|words| Ip::V4 {
            src: CLIENT4,
            dst: SERVER4,
            options: vec![1; words * 4],
        }),
        Just(Ip::V6 {
            src: CLIENT6,
            dst: SERVER6
        }),
    ];
    let payload = (any::<u8>(), 0usize..=72, any::<[u8; 8]>()).prop_map(|(first, len, t1)| {
        let mut p = ntp_request().to_vec();
        p.resize(len.max(48), 0);
        p.truncate(if len >= 44 { len } else { 48 });
        p[0] = first;
        if p.len() >= 48 {
            p[40..48].copy_from_slice(&t1);
        }
        p
    });
    let payload = prop_oneof![
        3 => (any::<[u8; 8]>(), any::<i8>()).prop_map(|(t1, poll)| {
            let mut p = ntp_request().to_vec();
            p[2] = poll as u8;
            p[40..48].copy_from_slice(&t1);
            p
        }),
        1 => payload,
    ];
    let checksum_kind = 0u8..4;
    let mutations = proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3);
    (
        vlan,
        ip,
        payload,
        0u8..64,
        0u8..4,
        0usize..12,
        checksum_kind,
        mutations,
    )
        .prop_map(
            |(vlan, ip, payload, dscp, ecn, padding, checksum_kind, mutations)| {
                let mut frame = RequestFrame {
                    vlan,
                    ip,
                    payload,
                    dscp,
                    ecn,
                    padding,
                    ..RequestFrame::v4()
                }
                .build();
                match checksum_kind {
                    1 => set_udp_checksum(&mut frame, |pseudo| pseudo),
                    2 => set_udp_checksum(&mut frame, |_| 0),
                    _ => {}
                }
                for (at, xor) in mutations {
                    let at = at % frame.len();
                    frame[at] ^= xor;
                }
                frame
            },
        )
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn generated_frames_get_the_same_answer_from_both_tiers() {
    if !requires_root() {
        return;
    }
    with_tier(|tier| {
        let mut runner = TestRunner::new(Config {
            cases: 3000,
            failure_persistence: None,
            ..Config::default()
        });
        let mut verdicts = [0u32; 4];
        let tier = &*tier;
        let counts = std::cell::RefCell::new(&mut verdicts);
        runner
            .run(&frames(), |frame| {
                let v = tier.check(&frame);
                counts.borrow_mut()[v as usize] += 1;
                Ok(())
            })
            .unwrap();
        eprintln!("verdicts (aborted, drop, pass, tx): {verdicts:?}");
        // The generator reaches every outcome (not a test that cannot fail by missing them all).
        assert!(verdicts[XDP_TX as usize] > 300, "{verdicts:?}");
        assert!(verdicts[XDP_PASS as usize] > 100, "{verdicts:?}");
        assert!(verdicts[XDP_DROP as usize] > 0, "{verdicts:?}");
    });
}

/// With interleaved mode on, the program leaves the requests that may be interleaved to AF_XDP
/// (where the previous reply's transmit stamp is) and marks its own time replies as the
/// pipeline does: the same frames, generated and by hand, against `reply_in_place` plus the
/// pipeline's mark.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn with_interleaved_mode_interleaved_requests_go_up_and_replies_are_marked() {
    if !requires_root() {
        return;
    }
    with_configured_tier(AdmissionOptions::default(), true, |tier| {
        let with = |version: u8, origin: u64, receive: u64, transmit: u64| {
            let mut payload = ntp_request().to_vec();
            payload[0] = (version << 3) | 3;
            payload[24..32].copy_from_slice(&origin.to_be_bytes());
            payload[32..40].copy_from_slice(&receive.to_be_bytes());
            payload[40..48].copy_from_slice(&transmit.to_be_bytes());
            payload
        };
        for base in [RequestFrame::v4(), RequestFrame::v6()] {
            let frame = |payload| {
                RequestFrame {
                    payload,
                    ..base.clone()
                }
                .build()
            };
            // A first request (origin zero), and a basic client's (origin = our transmit, even).
            assert_eq!(tier.check(&frame(with(4, 0, 0, 7))), XDP_TX);
            assert_eq!(tier.check(&frame(with(4, 0xe000_0000_0000_0002, 5, 7))), XDP_TX);
            // An interleaved client's: origin = our (marked, odd) receive stamp.
            assert_eq!(tier.check(&frame(with(4, 0xe000_0000_0000_0003, 5, 7))), XDP_PASS);
            // Not NTPv4, or receive = transmit (chrony's basic-mode tell): answered here.
            assert_eq!(tier.check(&frame(with(3, 0xe000_0000_0000_0003, 5, 7))), XDP_TX);
            assert_eq!(tier.check(&frame(with(4, 0xe000_0000_0000_0003, 7, 7))), XDP_TX);
            // The reply is marked: receive stamp odd, transmit stamp even.
            let (_, out) = test_run(tier.program.program_fd().unwrap(), &frame(with(4, 0, 0, 7)));
            let reply = ntp::Packet::new_unchecked(&out[out.len() - ntp::HEADER_LEN..]);
            assert_eq!(reply.receive_timestamp().0 & 1, 1);
            assert_eq!(reply.transmit_timestamp().0 & 1, 0);
        }
        let mut runner = TestRunner::new(Config {
            cases: 1000,
            failure_persistence: None,
            ..Config::default()
        });
        let tier = &*tier;
        runner
            .run(&frames(), |frame| {
                tier.check(&frame);
                Ok(())
            })
            .unwrap();
    });
}

/// A reader must never combine two publications: a writer flips between two states as fast as
/// it can while the program answers; every reply must be all one or all the other, and its T2
/// must be on that state's clock.
/// The leap second as the program applies it (apply_leap) against `LeapScale::apply`: stepped
/// inserted and deleted seconds just behind and well ahead of now, smears in progress, over and
/// to come, with leaps already folded in (`past_s`). The program reads the real CLOCK_TAI, so
/// each leap is placed relative to now; T2 and T3 are held between the Rust answers for the
/// reads around each run (monotonic there: no step falls between them).
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn leap_seconds_are_served_as_respond_serves_them() {
    if !requires_root() {
        return;
    }
    with_tier(|tier| {
        const H: i64 = 3_600_000_000_000;
        let clock = tier.published.clock;
        let now = clock.pre_leap_from_tai(tai_now() as i64);
        let mut scales = Vec::new();
        for delta in [1i8, -1] {
            for (at, past) in [(-10_000_000, 0), (-2 * H, 2), (3 * H, -1), (20 * H, 0)] {
                scales.push(LeapScale {
                    past_s: past,
                    delta,
                    at: now.add_nanos(at),
                    ..LeapScale::default()
                });
            }
            for (start, len) in [(-6 * H, 86_401), (-30 * H, 86_399), (H, 86_400), (-1, 3_600)] {
                scales.push(LeapScale {
                    past_s: 1,
                    delta,
                    at: now.add_nanos(start + 12 * H),
                    smear_start: now.add_nanos(start),
                    smear_len_s: len,
                    kernel_steps_realtime: false,
                });
            }
        }
        let frame = RequestFrame::v4().build();
        for leap in scales {
            let published = Published {
                clock: ClockParams { leap, ..clock },
                ..tier.published
            };
            tier.publish(published);
            for _ in 0..20 {
                assert_eq!(tier.check(&frame), XDP_TX, "{leap:?}");
            }
            // And the served time is off the unleapt one by what the scale says.
            let before = tai_now() as i64;
            let served = published.clock.ntp_from_tai(before);
            let expected = leap.offset_units(published.clock.pre_leap_from_tai(before));
            let past = clock
                .pre_leap_from_tai(before)
                .add_nanos(-(leap.past_s as i64) * 1_000_000_000);
            let off = served.0.wrapping_sub(past.0) as i64 - expected;
            assert!(off.abs() <= 8, "{off} units off for {leap:?}");
        }
    });
}

/// apply_leap bit for bit: a line of rate 0 makes the program's `u` the published anchor,
/// whatever the clock reads, so its T2 must be exactly `LeapScale::apply(anchor)`, at and
/// around every boundary (the step, the smear's start and end) and inside a smear.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn apply_leap_is_bit_for_bit_the_rust_one() {
    if !requires_root() {
        return;
    }
    with_tier(|tier| {
        let prog = tier.program.program_fd().unwrap();
        let frame = RequestFrame::v4().build();
        let midnight = NtpTimestamp(3_692_217_600u64 << 32);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for delta in [1i8, -1] {
            for smear_len_s in [0u32, 86_401, 86_399, 1_000, 7] {
                let leap = LeapScale {
                    past_s: 0,
                    delta,
                    at: midnight,
                    smear_start: midnight.add_nanos(-(smear_len_s as i64) * 500_000_000),
                    smear_len_s,
                    kernel_steps_realtime: false,
                };
                let mut points = vec![];
                for edge in [leap.at, leap.smear_start, leap.end()] {
                    for d in [-1i64, 0, 1, 1 << 31] {
                        points.push(NtpTimestamp(edge.0.wrapping_add(d as u64)));
                    }
                }
                for _ in 0..200 {
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let spread = (smear_len_s as u64 + 10) << 32;
                    points.push(NtpTimestamp(
                        leap.smear_start
                            .0
                            .wrapping_add((rng >> 11) % (spread + (20 << 32)))
                            .wrapping_sub(10 << 32),
                    ));
                }
                for u in points {
                    let mut state = encode(&tier.published, tai_now());
                    state.rate_int = 0;
                    state.rate_frac = 0;
                    state.ntp_anchor = u.0;
                    state.leap_at = leap.at.0;
                    state.smear_start = leap.smear_start.0;
                    state.smear_len_s = leap.smear_len_s;
                    state.leap_delta = leap.delta;
                    tier.map.write(&state);
                    let (verdict, out) = test_run(prog, &frame);
                    assert_eq!(verdict, XDP_TX);
                    let reply = ntp::Packet::new_unchecked(&out[out.len() - ntp::HEADER_LEN..]);
                    assert_eq!(reply.receive_timestamp(), leap.apply(u), "u {u:?} {leap:?}");
                    assert_eq!(reply.transmit_timestamp(), leap.apply(u), "u {u:?} {leap:?}");
                }
            }
        }
    });
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn a_reply_never_mixes_two_publications() {
    if !requires_root() {
        return;
    }
    with_tier(|tier| {
        let clock = corrected_clock();
        let a = Published {
            server: synced_state(&clock),
            clock,
        };
        // B differs in every field a reply carries, and its clock is 1000 s ahead of A's.
        let b = Published {
            server: ServerState {
                stratum: 9,
                precision: -7,
                root_delay: NtpShort(0x0009_0000),
                root_dispersion: NtpShort(0x0008_0000),
                reference_id: *b"BBBB",
                leap: ntp::Leap::DeleteSecond,
                ..a.server
            },
            clock: ClockParams {
                offset_ns: clock.offset_ns + 1_000_000_000_000,
                frequency_q48: -clock.frequency_q48,
                ..clock
            },
        };
        let map = tier.program.state_map().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut map = map;
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = if writes.is_multiple_of(2) { &a } else { &b };
                    map.write(&encode(p, tai_now()));
                    writes += 1;
                }
                writes
            })
        };
        let prog = tier.program.program_fd().unwrap();
        let frame = RequestFrame::v4().build();
        let (mut seen_a, mut seen_b) = (0, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut runs = 0;
        while runs < 200_000 && std::time::Instant::now() < deadline {
            runs += 1;
            let (verdict, out) = test_run(prog, &frame);
            if verdict != XDP_TX {
                assert_eq!(verdict, XDP_PASS, "a torn read goes to AF_XDP");
                continue;
            }
            let ntp_at = out.len() - ntp::HEADER_LEN;
            let r = ntp::Packet::new_unchecked(&out[ntp_at..]);
            let which = if r.stratum() == a.server.stratum { &a } else { &b };
            assert_eq!(r.stratum(), which.server.stratum);
            assert_eq!(r.precision(), which.server.precision);
            assert_eq!(r.root_delay(), which.server.root_delay);
            assert_eq!(r.reference_id(), which.server.reference_id);
            assert_eq!(r.leap(), which.server.leap);
            // T2 on the right clock: A's and B's are 1000 s apart.
            let t2 = r.receive_timestamp();
            let expected = which.clock.ntp_from_tai(tai_now() as i64);
            let apart = expected.diff_nanos(t2);
            assert!(
                (0..1_000_000_000).contains(&apart),
                "T2 {apart} ns from its own state's clock"
            );
            if std::ptr::eq(which, &a) {
                seen_a += 1;
            } else {
                seen_b += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes = writer.join().unwrap();
        let torn = tier.program.counters().unwrap().get(XdpCounter::StateTorn);
        eprintln!("{runs} runs, {writes} writes: {seen_a} A, {seen_b} B, {torn} torn");
        assert!(seen_a > 0 && seen_b > 0, "the writer never raced the reader");
    });
}

fn monotonic_now() -> u64 {
    read_clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Admission: sequences of requests from many sources through the program and through the Rust
/// `Admitter` with the same rules, limiter settings and secret give the same decisions (time,
/// KoD DENY, KoD RATE, drop) and the same bytes. The limiter's interval is long (10 s) against
/// the run (well under a second), so that the two clocks, read microseconds apart, decide the
/// same; its table is small (64 buckets), so that clients also take over each other's slots.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn admission_decides_as_the_rust_admitter_does() {
    use strata::proto::admission::{Acl, AclAction, Admitter, DenyAction, Limiter, LimiterConfig, Verdict};
    if !requires_root() {
        return;
    }
    let rules: Vec<(strata::proto::admission::Prefix, AclAction)> = [
        ("198.19.0.0/16", AclAction::Deny),
        ("198.19.1.0/24", AclAction::Allow),
        ("198.19.1.128/26", AclAction::Deny),
        ("fd00:5354:5241:8000::/49", AclAction::Deny),
        ("fd00:5354:5241:8001::/64", AclAction::Allow),
    ]
    .iter()
    .map(|(p, a)| (p.parse().unwrap(), *a))
    .collect();
    let limiter = LimiterConfig {
        interval_ns: 10_000_000_000,
        burst: 4,
        leak: 2,
        kod: 1,
        v4_prefix: 32,
        v6_prefix: 64,
        buckets_log2: 6,
    };
    let secret = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
    let options = AdmissionOptions {
        rules: rules.clone(),
        deny_action: DenyAction::KissDeny,
        limiter: Some((limiter, secret)),
        quota: None,
        sample_shift: 0,
    };
    with_admitting_tier(options, move |tier| {
        let mut acl = Acl::default();
        for (p, a) in &rules {
            acl.add(*p, *a).unwrap();
        }
        let admitter = Admitter::new(acl, DenyAction::KissDeny).limited(Some(Limiter::new(limiter, secret)));
        // 200 clients: allowed and denied IPv4 and IPv6, several in one /64.
        let sources: Vec<Ip> = (0..200u32)
            .map(|i| match i % 4 {
                0 => Ip::V4 {
                    src: [198, 19, 1, (i % 200) as u8].into(),
                    dst: SERVER4,
                    options: vec![],
                },
                1 => Ip::V4 {
                    src: [198, 19, 2 + (i % 7) as u8, i as u8].into(),
                    dst: SERVER4,
                    options: vec![],
                },
                2 => Ip::V6 {
                    src: std::net::Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0x8001, 0, 0, 0, (i % 3) as u16),
                    dst: SERVER6,
                },
                _ => Ip::V6 {
                    src: std::net::Ipv6Addr::new(
                        0xfd00,
                        0x5354,
                        0x5241,
                        0x8000 + (i % 5) as u16,
                        1,
                        2,
                        3,
                        i as u16,
                    ),
                    dst: SERVER6,
                },
            })
            .collect();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut seen = std::collections::HashMap::new();
        for _ in 0..4000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Skewed: a few sources send most requests, so that they go over their limit.
            let pick = ((rng % 200) * (rng >> 32 & 0xff) / 255) as usize % sources.len();
            let ip = sources[pick].clone();
            let frame = RequestFrame {
                ip: ip.clone(),
                ..RequestFrame::v4()
            }
            .build();
            let now = monotonic_now();
            let verdict = admitter.admit(ip.src(), now);
            let got = tier.check_admitted(&frame, verdict.admission());
            *seen.entry(format!("{verdict:?}")).or_insert(0u32) += 1;
            if verdict.admission().is_some() {
                assert_eq!(got, XDP_TX, "{verdict:?} for {:?}", ip.src());
            }
        }
        eprintln!("decisions: {seen:?}");
        // Every kind of decision was made (a test that reached none of them could not fail).
        for kind in [
            format!("{:?}", Verdict::Answer(Admission::Serve)),
            format!(
                "{:?}",
                Verdict::Answer(Admission::Kiss(strata::proto::respond::KissCode::Deny))
            ),
            format!(
                "{:?}",
                Verdict::Answer(Admission::Kiss(strata::proto::respond::KissCode::Rate))
            ),
            format!("{:?}", Verdict::DropLimited),
        ] {
            assert!(seen.get(&kind).copied().unwrap_or(0) > 0, "no {kind} in {seen:?}");
        }
        let c = tier.program.counters().unwrap();
        assert_eq!(
            c.get(XdpCounter::KodDeny) as u32,
            seen[&format!(
                "{:?}",
                Verdict::Answer(Admission::Kiss(strata::proto::respond::KissCode::Deny))
            )]
        );
        assert_eq!(
            c.get(XdpCounter::DropLimited) as u32,
            seen[&format!("{:?}", Verdict::DropLimited)]
        );
        assert!(c.get(XdpCounter::Leaked) > 0);
    });
}

/// The total cap: requests from busy and quiet clients through the program and through the
/// Rust `Admitter` with the same cap give the same decisions. The cap's interval is a second
/// against a run of a few milliseconds, so that its decisions fall at whole answers (busy
/// clients get 3 before it closes to them, quiet ones 6), whatever microseconds separate the
/// two clocks. The program keeps one bucket per CPU, so this thread stays on one CPU.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn the_total_cap_decides_as_the_rust_admitter_does() {
    use strata::proto::admission::{
        Acl, Admitter, DenyAction, Limiter, LimiterConfig, Quota, QuotaConfig, Verdict,
    };
    if !requires_root() {
        return;
    }
    let limiter = LimiterConfig {
        interval_ns: 10_000_000_000,
        burst: 2,
        leak: 1,
        kod: 0,
        v4_prefix: 32,
        v6_prefix: 64,
        buckets_log2: 6,
    };
    let quota = QuotaConfig {
        interval_ns: 1_000_000_000,
        quiet_span_ns: 5_500_000_000,
        busy_span_ns: 2_500_000_000,
    };
    let secret = [0x1111_2222_3333_4444, 0x5555_6666_7777_8888];
    let options = AdmissionOptions {
        rules: vec![],
        deny_action: DenyAction::Drop,
        limiter: Some((limiter, secret)),
        quota: Some(quota),
        sample_shift: 0,
    };
    with_admitting_tier(options, move |tier| {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it, and
        // sched_setaffinity reads it for the calling thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set), 0);
        }
        let admitter = Admitter::new(Acl::default(), DenyAction::Drop)
            .limited(Some(Limiter::new(limiter, secret)))
            .capped(Some(Quota::new(quota)));
        // One abuser first (its burst, then its leak: busy), then many new clients (quiet).
        let abuser = std::net::Ipv4Addr::new(198, 18, 7, 7);
        let sources =
            std::iter::repeat_n(abuser, 12).chain((0..40u8).map(|i| std::net::Ipv4Addr::new(198, 18, 9, i)));
        let mut decisions = Vec::new();
        for src in sources {
            let ip = Ip::V4 {
                src,
                dst: SERVER4,
                options: vec![],
            };
            let frame = RequestFrame {
                ip: ip.clone(),
                ..RequestFrame::v4()
            }
            .build();
            let verdict = admitter.admit(ip.src(), monotonic_now());
            let got = tier.check_admitted(&frame, verdict.admission());
            if verdict.admission().is_some() {
                assert_eq!(got, XDP_TX, "{verdict:?} for {src}");
            }
            decisions.push(verdict);
        }
        let served = |v: &[Verdict]| v.iter().filter(|v| matches!(v, Verdict::Answer(_))).count();
        // The abuser: 2 within its burst, then its leak (every other request) until the cap
        // closes to busy clients after 3 answers.
        assert_eq!(served(&decisions[..12]), 3, "{:?}", &decisions[..12]);
        assert!(
            decisions[..12].contains(&Verdict::DropQuota),
            "{:?}",
            &decisions[..12]
        );
        assert!(
            decisions[..12].contains(&Verdict::DropLimited),
            "{:?}",
            &decisions[..12]
        );
        // Quiet clients still get the 3 more the cap holds for them, then nobody does.
        assert_eq!(served(&decisions[12..]), 3, "{:?}", &decisions[12..]);
        let c = tier.program.counters().unwrap();
        let over = decisions.iter().filter(|v| **v == Verdict::DropQuota).count() as u64;
        assert_eq!(c.get(XdpCounter::DropQuota), over);
        // The program tracked and forgot the same clients as the Rust table.
        let (tracked, evicted) = admitter.limiter.as_ref().unwrap().occupancy();
        assert_eq!(tracked + evicted, 41);
        assert_eq!(c.get(XdpCounter::LimiterTracked), tracked);
        assert_eq!(c.get(XdpCounter::LimiterEvicted), evicted);
    });
}

/// A spoofed spray of random IPv6 sources (and random IPv4 ones), each far over its limit,
/// through the program with a small table (64 buckets, so it churns all the time): the normal
/// clients, IPv6 /64s and IPv4 addresses asking within their burst in the middle of it, are
/// never limited, and every decision is the Rust `Admitter`'s.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn a_spoofed_spray_limits_no_normal_client_in_the_program() {
    use strata::proto::admission::{Acl, Admitter, DenyAction, Limiter, LimiterConfig, Verdict};
    if !requires_root() {
        return;
    }
    let limiter = LimiterConfig {
        interval_ns: 10_000_000_000,
        burst: 4,
        leak: 0,
        kod: 0,
        v4_prefix: 32,
        v6_prefix: 64,
        buckets_log2: 6,
    };
    let secret = [0x0bad_cafe_dead_beef, 0x1234_4321_5678_8765];
    let options = AdmissionOptions {
        rules: vec![],
        deny_action: DenyAction::Drop,
        limiter: Some((limiter, secret)),
        quota: None,
        sample_shift: 0,
    };
    with_admitting_tier(options, move |tier| {
        let admitter =
            Admitter::new(Acl::default(), DenyAction::Drop).limited(Some(Limiter::new(limiter, secret)));
        let normal: Vec<Ip> = (0..40u16)
            .map(|i| match i % 2 {
                0 => Ip::V6 {
                    src: std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, i, 0, 0, 0, 1),
                    dst: SERVER6,
                },
                _ => Ip::V4 {
                    src: [198, 18, 100, i as u8].into(),
                    dst: SERVER4,
                    options: vec![],
                },
            })
            .collect();
        let mut rng = 0x6a09_e667_f3bc_c909u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let send = |ip: &Ip| -> Verdict {
            let frame = RequestFrame {
                ip: ip.clone(),
                ..RequestFrame::v4()
            }
            .build();
            let verdict = admitter.admit(ip.src(), monotonic_now());
            tier.check_admitted(&frame, verdict.admission());
            verdict
        };
        let mut spray_limited = 0;
        // Three rounds: a spray of 2000 sources, 6 requests each, then every normal client once
        // (3 requests in all: within its burst of 4).
        for round in 0..3 {
            for _ in 0..2000 {
                let spoofed = if next() % 4 == 0 {
                    Ip::V4 {
                        src: (next() as u32).into(),
                        dst: SERVER4,
                        options: vec![],
                    }
                } else {
                    let a = (next() as u128) << 64 | next() as u128;
                    Ip::V6 {
                        src: (a | 0x2000 << 112).into(),
                        dst: SERVER6,
                    }
                };
                for _ in 0..6 {
                    if send(&spoofed) == Verdict::DropLimited {
                        spray_limited += 1;
                    }
                }
            }
            for (i, ip) in normal.iter().enumerate() {
                assert_eq!(
                    send(ip),
                    Verdict::Answer(Admission::Serve),
                    "normal client {i} ({:?}) in round {round}",
                    ip.src()
                );
            }
        }
        assert!(
            spray_limited >= 3 * 2000,
            "the spray was not limited: {spray_limited}"
        );
    });
}
