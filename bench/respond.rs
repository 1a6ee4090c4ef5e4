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

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use strata::proto::clock::{Clock, ClockParams, FixedClock};
use strata::proto::frame::{reply_in_place, stamp_transmit_in_frame};
use strata::proto::respond::{respond, Admission};
use strata::proto::wire::NtpTimestamp;
use strata::sys::clock::read::kernel_tai_offset;
use strata::sys::clock::SystemClock;
use strata_test_support::{ntp_request, synced, RequestFrame};

const T2: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_0000);
const T3: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_1000);
const NTP_PORT: u16 = 123;
/// Requests per timed batch in the `*_batched` runs: like a responder's RX batch, and small
/// enough (64 x 90 bytes) that the batch stays in L1 rather than measuring cache misses.
const BATCH: u64 = 64;

fn bench_respond<C: Clock>(c: &mut Criterion, name: &str, clock: &C) {
    let template = ntp_request();
    let state = synced();
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
    let template: [u8; 90] = RequestFrame::v4().build().try_into().expect("a 90-byte frame");
    let state = synced();
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
    let mut frame = RequestFrame::v4().build();
    let reply = reply_in_place(&mut frame, T2, T3, Admission::Serve, &synced(), NTP_PORT).unwrap();
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
    let frame_template = RequestFrame::v4().build();
    let mut frame_buf = frame_template.clone();
    group.bench_function("copy_90", |b| {
        b.iter(|| {
            frame_buf.copy_from_slice(black_box(&frame_template));
            black_box(&mut frame_buf);
        })
    });
    group.finish();
}

/// An NTS-protected request (AES-SIV-CMAC-256, one cookie, no placeholder: 232 bytes, what
/// chronyd sends) answered by `respond_nts`: the cookie opened, the request authenticated, a
/// fresh cookie sealed, the reply sealed. Against `respond/fixed_clock`, what NTS costs.
fn bench_nts(c: &mut Criterion) {
    use strata::proto::nts::client;
    use strata::proto::nts::cookie::cookie_len;
    use strata::proto::nts::{respond_nts, Aead, NtsContext, NtsKeys, Rotation, SessionKeys};
    const NOW: u64 = 1_780_000_000;
    let keys = NtsKeys {
        master: [7; 32],
        rotation: Rotation::default(),
        require: false,
    };
    let mut nts = keys.responder([9; 32]);
    let state = synced();
    let mut group = c.benchmark_group("nts");
    group.throughput(Throughput::Elements(1));
    for aead in Aead::ALL {
        let session = SessionKeys::new(aead, &[1; 32], &[2; 32]).unwrap();
        let mut cookie = vec![0u8; cookie_len(aead)];
        nts.keys.seal(&session, NOW, &[3; 16], &mut cookie).unwrap();
        let template = client::request(
            &ntp_request(),
            &[4; 32],
            &cookie,
            0,
            &session,
            &vec![5; aead.nonce_len()],
        );
        let mut buf = template.clone();
        group.bench_function(format!("respond_nts_{aead:?}"), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&template));
                let ctx = NtsContext {
                    keys: &mut nts.keys,
                    nonces: &mut nts.nonces,
                    unix_s: NOW,
                };
                black_box(respond_nts(
                    black_box(&mut buf),
                    T2,
                    T3,
                    Admission::Serve,
                    &state,
                    ctx,
                ))
                .unwrap()
            })
        });
    }
    group.finish();
}

/// A request carrying a MAC (MD5, SHA1, AES128-CMAC: 68 or 72 bytes, as chronyd sends with
/// `key N`) answered by `respond_mac`: the request's MAC checked, the reply's computed. Against
/// `respond/fixed_clock`, what a symmetric key costs.
fn bench_mac(c: &mut Criterion) {
    use strata::proto::auth::{respond_mac, Key, KeyTable, KeyType};
    let keys = KeyTable::new(vec![
        Key::new(1, KeyType::Md5, b"bench-md5-secret-20b").unwrap(),
        Key::new(2, KeyType::Sha1, b"bench-sha1-secret-20").unwrap(),
        Key::new(3, KeyType::Aes128, &[3; 16]).unwrap(),
    ])
    .unwrap();
    let state = synced();
    let mut group = c.benchmark_group("mac");
    group.throughput(Throughput::Elements(1));
    for id in [1u32, 2, 3] {
        let key = keys.get(id).unwrap();
        let mut template = ntp_request().to_vec();
        template.resize(48 + 4 + key.digest_len(), 0);
        key.sign(&mut template, 48).unwrap();
        let mut buf = template.clone();
        group.bench_function(format!("respond_mac_{}", key.key_type().name()), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&template));
                black_box(respond_mac(
                    black_box(&mut buf),
                    T2,
                    T3,
                    Admission::Serve,
                    &state,
                    &keys,
                ))
                .unwrap()
            })
        });
    }
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
    bench_nts(c);
    bench_mac(c);
}

criterion_group!(respond_benches, benches);
criterion_main!(respond_benches);
