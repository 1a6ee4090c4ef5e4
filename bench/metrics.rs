//! What recording the counters costs a responder, per packet: the socket responder's
//! per-packet sequence (count the datagram and its timestamp source, `respond()`, count the
//! reply, record T3 − T2 in the histogram; one batch-size record per batch) run over a batch of
//! 64 requests, once recording into a real counter block ([`CounterWriter`]) and once into
//! [`NoRecord`], which compiles to nothing. The difference between the two is the cost of the
//! counters; `record_only/*` isolates the recording calls without `respond()`.
//!
//! Run: `cargo bench --bench metrics -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::clock::FixedClock;
use strata::metrics::counters;
use strata::metrics::record::{NoRecord, Record};
use strata::metrics::RxTimestampSource;
use strata::respond::{respond, stamp_transmit, Admission, ReplyKind};
use strata::state::{ServerState, UnsyncPolicy};
use strata::wire::ntp::{self, Leap, Mode};
use strata::wire::{NtpShort, NtpTimestamp};

const BATCH: usize = 64;
const T2: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_0000);
const T3: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0001_0000);

fn state() -> ServerState {
    ServerState {
        synchronized: true,
        leap: Leap::NoWarning,
        stratum: 2,
        precision: -24,
        root_delay: NtpShort(0x100),
        root_dispersion: NtpShort(0x200),
        reference_id: [198, 18, 0, 1],
        reference_time: NtpTimestamp(0xe98a_1b20_0000_0000),
        unsync_policy: UnsyncPolicy::Answer,
    }
}

fn request() -> [u8; ntp::HEADER_LEN] {
    let mut buf = [0u8; ntp::HEADER_LEN];
    let mut p = ntp::Packet::new_unchecked(&mut buf[..]);
    p.set_leap_version_mode(Leap::Unsynchronized, 4, Mode::Client);
    p.set_poll(6);
    p.set_transmit_timestamp(NtpTimestamp(0xe98a_1b2c_1234_5678));
    buf
}

/// One batch as the socket responder serves it, recording into `r`.
#[inline(always)]
fn serve_batch<R: Record>(r: &mut R, bufs: &mut [[u8; ntp::HEADER_LEN]; BATCH], state: &ServerState) {
    let clock = FixedClock(T3);
    r.batch(BATCH);
    for buf in bufs.iter_mut() {
        r.received(buf.len());
        r.rx_timestamp(RxTimestampSource::KernelSoftware);
        match respond(&mut buf[..], black_box(T2), Admission::Serve, state, &clock) {
            Ok(reply) => {
                if !matches!(reply.kind, ReplyKind::Kiss(_)) {
                    let t3 = black_box(T3);
                    stamp_transmit(&mut buf[..], t3);
                    let t2 = ntp::Packet::new_unchecked(&buf[..]).receive_timestamp();
                    r.response_time(t3.diff_nanos(t2));
                }
                r.replied(reply.kind, reply.len);
            }
            Err(reason) => r.dropped(reason),
        }
    }
}

fn bench_serve<R: Record>(c: &mut Criterion, name: &str, r: &mut R) {
    let template = [request(); BATCH];
    let state = state();
    let mut bufs = template;
    let mut group = c.benchmark_group("serve_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            bufs.copy_from_slice(black_box(&template));
            serve_batch(r, &mut bufs, &state);
            black_box(&bufs);
        })
    });
    group.finish();
}

/// The recording calls of one packet alone.
fn bench_record<R: Record>(c: &mut Criterion, name: &str, r: &mut R) {
    let mut group = c.benchmark_group("record_only");
    group.throughput(Throughput::Elements(1));
    let mut ns = 0i64;
    group.bench_function(name, |b| {
        b.iter(|| {
            ns = (ns + 977) & 0xf_ffff;
            r.received(black_box(48));
            r.rx_timestamp(black_box(RxTimestampSource::KernelSoftware));
            r.response_time(black_box(ns));
            r.replied(black_box(ReplyKind::Time), black_box(48));
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let (mut writer, reader) = counters();
    bench_serve(c, "with_counters", &mut writer);
    bench_serve(c, "without_counters", &mut NoRecord);
    bench_record(c, "with_counters", &mut writer);
    bench_record(c, "without_counters", &mut NoRecord);
    // The counters really were written (and the writes cannot be optimised away).
    assert!(black_box(reader.snapshot()).requests > 0);
}

criterion_group!(metrics_benches, benches);
criterion_main!(metrics_benches);
