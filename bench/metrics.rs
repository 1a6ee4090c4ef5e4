//! What recording the counters costs a responder, per packet: the real per-batch routine of the
//! user-space tiers (`strata::sys::pipeline`, as the socket path runs it: the published state read
//! once, each request counted, stamped and answered with `respond()`, one T3 clock read, each
//! reply stamped with its response time recorded and counted as sent) over a batch of 64
//! requests, once recording into a real counter block ([`CounterWriter`]) and once into
//! [`NoRecord`], which compiles to nothing. The difference between the two is the cost of the
//! counters; `record_only/*` isolates the recording calls without the rest.
//!
//! Run: `cargo bench --bench metrics -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::proto::clock::ClockParams;
use strata::proto::metrics::counters;
use strata::proto::metrics::record::{NoRecord, Record};
use strata::proto::metrics::RxTimestampSource;
use strata::proto::respond::{Admission, ReplyKind};
use strata::proto::state::{self, Published, StateReader};
use strata::proto::wire::ntp;
use strata::sys::pipeline::{Datagrams, Pipeline, RxStamp};
use strata_test_support::{ntp_request, synced};

const BATCH: usize = 64;
/// CLOCK_REALTIME nanoseconds of the requests' receive stamps.
const RX_NS: i64 = 1_700_000_000_000_000_000;

/// One batch through the pipeline, as the socket responder runs it (without the syscalls).
#[inline(always)]
fn serve_batch<R: Record>(
    p: &mut Pipeline<Datagrams, R>,
    reader: &StateReader,
    bufs: &mut [[u8; ntp::HEADER_LEN]; BATCH],
    replies: &mut Vec<strata::proto::respond::Reply>,
) {
    p.begin(reader, BATCH);
    replies.clear();
    let stamp = RxStamp {
        ns: black_box(RX_NS),
        source: RxTimestampSource::KernelSoftware,
        hardware_ns: None,
        ifindex: None,
    };
    for buf in bufs.iter_mut() {
        if let Some(reply) = p.answer(&mut buf[..], stamp, None, Ok(Admission::Serve)) {
            replies.push(reply);
        }
    }
    let t3 = p.transmit_time();
    for (buf, reply) in bufs.iter_mut().zip(replies.iter()) {
        p.stamp(&mut buf[..], reply, t3);
        p.sent(reply);
    }
}

fn bench_serve<R: Record>(c: &mut Criterion, name: &str, r: R) -> R {
    let template = [ntp_request(); BATCH];
    let (_writer, reader) = state::publish(Published {
        server: synced(),
        clock: ClockParams::identity(0),
    });
    let mut pipeline = Pipeline::new(Datagrams, r, None);
    let mut bufs = template;
    let mut replies = Vec::with_capacity(BATCH);
    let mut group = c.benchmark_group("serve_batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            bufs.copy_from_slice(black_box(&template));
            serve_batch(&mut pipeline, &reader, &mut bufs, &mut replies);
            black_box(&bufs);
        })
    });
    group.finish();
    pipeline.into_counters()
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
    let (writer, reader) = counters();
    let mut writer = bench_serve(c, "with_counters", writer);
    bench_serve(c, "without_counters", NoRecord);
    bench_record(c, "with_counters", &mut writer);
    bench_record(c, "without_counters", &mut NoRecord);
    // The counters really were written (and the writes cannot be optimised away).
    assert!(black_box(reader.snapshot()).requests > 0);
}

criterion_group!(metrics_benches, benches);
criterion_main!(metrics_benches);
