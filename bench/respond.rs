//! Per-packet cost of the responder's pure work: `respond()` on a bare 48-byte NTP request, and
//! `frame::reply_in_place` on a whole 90-byte IPv4 Ethernet request frame (parse and check every
//! header, verify the UDP checksum, respond, turn the headers around, fix both checksums).
//!
//! Each iteration first restores the request from a template (a reply is not a request). That
//! copy is measured on its own (`restore/*`) so that it can be subtracted; it also costs more than
//! itself, because the code under test then reads bytes that are still in the store buffer. The
//! `*_batched` variants avoid both: criterion prepares a batch of 64 fresh copies untimed
//! (`iter_batched_ref`), closer to a responder whose frames were written by the NIC or the kernel
//! long before, at the price of a timer read per batch. Both are run with a
//! `FixedClock` (the work alone) and a `SystemClock` (plus a real CLOCK_TAI read through the vDSO
//! per request, a worst case: the responders read T3 once per batch); `clock/system_now` is that
//! read alone.
//!
//! Run: `cargo bench --bench respond -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata::proto::clock::{Clock, ClockParams, FixedClock};
use strata::proto::frame::{reply_in_place, stamp_transmit_in_frame};
use strata::proto::respond::{respond, Admission};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ethernet::{self, EtherType, EthernetAddress, Vlan};
use strata::proto::wire::ipv4::{self, IpProtocol};
use strata::proto::wire::ntp::{self, Leap, Mode};
use strata::proto::wire::{udp, NtpShort, NtpTimestamp};
use strata::sys::clock::read::kernel_tai_offset;
use strata::sys::clock::SystemClock;

const T2: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_0000);
const T3: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_1000);
const NTP_PORT: u16 = 123;
/// Requests per timed batch in the `*_batched` runs: like a responder's RX batch, and small
/// enough (64 x 90 bytes) that the batch stays in L1 rather than measuring cache misses.
const BATCH: u64 = 64;

fn state() -> ServerState {
    ServerState {
        synchronized: true,
        leap: Leap::NoWarning,
        stratum: 2,
        precision: -24,
        root_delay: NtpShort(0x0000_0100),
        root_dispersion: NtpShort(0x0000_0200),
        reference_id: [198, 18, 0, 1],
        reference_time: NtpTimestamp(0xe98a_1b20_0000_0000),
        unsync_policy: UnsyncPolicy::Answer,
    }
}

/// An NTPv4 client request, as ntpdig or chrony send it.
fn ntp_request() -> [u8; ntp::HEADER_LEN] {
    let mut buf = [0u8; ntp::HEADER_LEN];
    let mut p = ntp::Packet::new_unchecked(&mut buf[..]);
    p.set_leap_version_mode(Leap::Unsynchronized, 4, Mode::Client);
    p.set_poll(6);
    p.set_precision(-20);
    p.set_transmit_timestamp(NtpTimestamp(0xe98a_1b2c_1234_5678));
    buf
}

/// The request in an untagged IPv4 Ethernet frame: 14 + 20 + 8 + 48 = 90 bytes, checksums valid.
fn ipv4_frame() -> Vec<u8> {
    let payload = ntp_request();
    let (src, dst) = (Ipv4Addr::new(198, 19, 1, 2), Ipv4Addr::new(198, 18, 0, 1));
    let eth = ethernet::Repr {
        src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x10]),
        dst_addr: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
        vlan: Vlan::Untagged,
        ethertype: EtherType::IPV4,
    };
    let udp_len = udp::HEADER_LEN + payload.len();
    let ip = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: IpProtocol::UDP,
        ttl: 64,
        dscp: 0,
        ecn: 0,
        ident: 0x1234,
        dont_frag: true,
        more_frags: false,
        frag_offset: 0,
        options: &[],
        payload_len: udp_len,
    };
    let l3 = eth.buffer_len();
    let l4 = l3 + ip.buffer_len();
    let mut frame = vec![0u8; l4 + udp_len];
    eth.emit(&mut ethernet::Frame::new_unchecked(&mut frame[..]));
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut frame[l3..]));
    let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..]);
    udp::Repr {
        src_port: 50123,
        dst_port: NTP_PORT,
        payload_len: payload.len(),
    }
    .emit(&mut datagram);
    datagram.payload_mut().copy_from_slice(&payload);
    datagram.fill_checksum_v4(src, dst);
    frame
}

fn bench_respond<C: Clock>(c: &mut Criterion, name: &str, clock: &C) {
    let template = ntp_request();
    let state = state();
    let mut buf = template;
    let mut group = c.benchmark_group("respond");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&template));
            let reply = respond(black_box(&mut buf), T2, clock.now(), Admission::Serve, &state);
            black_box(reply).unwrap()
        })
    });
    group.bench_function(format!("{name}_batched"), |b| {
        b.iter_batched_ref(
            || template,
            |buf| black_box(respond(black_box(buf), T2, clock.now(), Admission::Serve, &state)).unwrap(),
            BatchSize::NumIterations(BATCH),
        )
    });
    group.finish();
}

fn bench_frame<C: Clock>(c: &mut Criterion, name: &str, clock: &C) {
    let template: [u8; 90] = ipv4_frame().try_into().expect("a 90-byte frame");
    let state = state();
    let mut buf = template;
    let mut group = c.benchmark_group("frame_ipv4");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&template));
            let reply = reply_in_place(
                black_box(&mut buf),
                T2,
                clock.now(),
                Admission::Serve,
                &state,
                NTP_PORT,
            );
            black_box(reply).unwrap()
        })
    });
    group.bench_function(format!("{name}_batched"), |b| {
        b.iter_batched_ref(
            || template,
            |buf| {
                let reply = reply_in_place(
                    black_box(buf),
                    T2,
                    clock.now(),
                    Admission::Serve,
                    &state,
                    NTP_PORT,
                );
                black_box(reply).unwrap()
            },
            BatchSize::NumIterations(BATCH),
        )
    });
    group.finish();
}

/// Re-stamping T3 in a reply frame with the incremental UDP checksum update, as a responder does
/// just before a TX batch goes out.
fn bench_restamp(c: &mut Criterion) {
    let mut frame = ipv4_frame();
    let reply = reply_in_place(&mut frame, T2, T3, Admission::Serve, &state(), NTP_PORT).unwrap();
    let mut t3 = T3;
    let mut group = c.benchmark_group("frame_ipv4");
    group.throughput(Throughput::Elements(1));
    group.bench_function("stamp_transmit", |b| {
        b.iter(|| {
            t3 = NtpTimestamp(t3.0.wrapping_add(0x1000));
            stamp_transmit_in_frame(black_box(&mut frame), &reply, t3);
        })
    });
    group.finish();
}

fn restore(c: &mut Criterion) {
    let mut group = c.benchmark_group("restore");
    group.throughput(Throughput::Elements(1));
    let ntp_template = ntp_request();
    let mut ntp_buf = ntp_template;
    group.bench_function("copy_48", |b| {
        b.iter(|| {
            ntp_buf.copy_from_slice(black_box(&ntp_template));
            black_box(&mut ntp_buf);
        })
    });
    let frame_template = ipv4_frame();
    let mut frame_buf = frame_template.clone();
    group.bench_function("copy_90", |b| {
        b.iter(|| {
            frame_buf.copy_from_slice(black_box(&frame_template));
            black_box(&mut frame_buf);
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let fixed = FixedClock(T3);
    let system = SystemClock::new(ClockParams::identity(kernel_tai_offset()));

    restore(c);
    let mut group = c.benchmark_group("clock");
    group.bench_function("system_now", |b| b.iter(|| black_box(system.now())));
    group.finish();

    bench_respond(c, "fixed_clock", &fixed);
    bench_respond(c, "system_clock", &system);
    bench_frame(c, "fixed_clock", &fixed);
    bench_frame(c, "system_clock", &system);
    bench_restamp(c);
}

criterion_group!(respond_benches, benches);
criterion_main!(respond_benches);
