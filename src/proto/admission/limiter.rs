//! Per-client rate limiting with the semantics operators know from chrony's `ratelimit`: an
//! average interval between answered requests, a burst answered back to back, and a leak (1 in
//! 2^leak of the requests over the limit answered anyway, so that a victim whose address a flood
//! spoofs still gets its time). Optionally 1 in 2^kod of the rest get a Kiss-o'-Death RATE
//! instead of nothing: a KoD is never larger than the request and is itself limited this way.
//!
//! Each client is a GCRA bucket (one "theoretical arrival time", TAT): a request at `now` is
//! within the limit if the TAT is at most `(burst - 1) * interval` ahead of `now`, and then pushes
//! it `interval` further. Clients are keyed by address, IPv4 by /32 and IPv6 by /64 unless
//! configured otherwise (one host can own a whole /64).
//!
//! The table is fixed in size and bounded: 2^n buckets of two slots of 16 bytes (TAT, over-limit
//! count, tag), 32 bytes per bucket, chosen by a keyed hash of the client's prefix with a secret
//! drawn at start. A client whose bucket holds neither slot's tag takes the slot with the earlier
//! TAT (a client seen longer ago, or one well within its limit) and starts afresh. So:
//! - a full table forgets the quietest clients first, and a forgotten client is answered as a new
//!   one: memory pressure never limits anybody, it only forgets;
//! - a flood of spoofed random sources cannot aim at a real client's bucket (the hash is keyed)
//!   and can only make clients forgotten, never limited: a real client is limited only by its own
//!   requests (or by another address of its own /32 or /64, or the rare client sharing its bucket
//!   and tag, 1 in 2^32);
//! - an abusive client's bucket has a TAT far ahead, so it is the last to be taken over.
//!
//! Several threads (or CPUs, in the XDP program) may update one slot at once; a lost update
//! makes the limit slightly looser, never stricter. The XDP program (xdp-prog/strata_admit.h)
//! computes exactly this; keep the two together.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Average interval between answered requests of one client, in nanoseconds.
    pub interval_ns: u64,
    /// Requests answered back to back before the interval applies (at least 1).
    pub burst: u32,
    /// 1 in 2^leak requests over the limit answered anyway; 0: none.
    pub leak: u8,
    /// 1 in 2^kod of the other over-limit requests answered with a KoD RATE; 0: none.
    pub kod: u8,
    /// Bits of an IPv4 address that make a client (32: each address).
    pub v4_prefix: u8,
    /// Bits of an IPv6 address that make a client (64: each /64).
    pub v6_prefix: u8,
    /// The table has 2^buckets_log2 buckets of two clients each.
    pub buckets_log2: u8,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            interval_ns: 1_000_000_000,
            burst: 16,
            leak: 2,
            kod: 0,
            v4_prefix: 32,
            v6_prefix: 64,
            buckets_log2: 20,
        }
    }
}

/// Bytes per bucket (two slots); the table takes 2^buckets_log2 of them.
pub const BUCKET_BYTES: usize = 32;

/// What a reload may change while the table stays as it is: the rate, not the table's size,
/// the prefixes or the secret, which decide where each client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterRate {
    pub interval_ns: u64,
    pub burst: u32,
    pub leak: u8,
    pub kod: u8,
}

impl LimiterConfig {
    /// Its rate.
    pub fn rate(&self) -> LimiterRate {
        LimiterRate {
            interval_ns: self.interval_ns,
            burst: self.burst,
            leak: self.leak,
            kod: self.kod,
        }
    }

    /// The same table at `rate`.
    pub fn with_rate(self, rate: LimiterRate) -> LimiterConfig {
        LimiterConfig {
            interval_ns: rate.interval_ns,
            burst: rate.burst,
            leak: rate.leak,
            kod: rate.kod,
            ..self
        }
    }

    /// The table's size in bytes.
    pub fn table_bytes(&self) -> usize {
        BUCKET_BYTES << self.buckets_log2
    }

    /// How far ahead of now a client's TAT may be for a request to be within the limit.
    pub fn burst_span_ns(&self) -> u64 {
        (self.burst.max(1) as u64 - 1).saturating_mul(self.interval_ns)
    }
}

/// Burst, leak and kod in one word.
fn pack_rate(rate: &LimiterRate) -> u64 {
    (rate.burst as u64) << 16 | (rate.leak as u64) << 8 | rate.kod as u64
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Within the limit, and quiet: the client's bucket was empty (it polls at or below its
    /// rate).
    Serve,
    /// Within the limit, spending its burst (the bucket was not empty).
    Burst,
    /// Over the limit, answered anyway (the leak).
    Leak,
    /// Over the limit: a KoD RATE.
    Kiss,
    /// Over the limit: nothing.
    Drop,
}

/// The client key of `addr`: its prefix as two 64-bit halves (IPv4 as an IPv4-mapped IPv6
/// address, so the families never share a key).
pub fn client_key(addr: IpAddr, v4_prefix: u8, v6_prefix: u8) -> (u64, u64) {
    match addr {
        IpAddr::V4(a) => {
            let v4 = u32::from(a) as u64;
            let masked = if v4_prefix == 0 {
                0
            } else {
                v4 & (u32::MAX << (32 - v4_prefix.min(32))) as u64
            };
            (0, 0xffff_0000_0000 | masked)
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let p = v6_prefix.min(128);
            let masked = if p == 0 { 0 } else { v & (u128::MAX << (128 - p)) };
            ((masked >> 64) as u64, masked as u64)
        }
    }
}

/// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The keyed hash of a client key: without the secret, nobody can tell which bucket an address
/// lands in, so a flood cannot aim at one.
#[inline]
pub fn client_hash(key: (u64, u64), secret: [u64; 2]) -> u64 {
    fmix64(fmix64(key.0 ^ secret[0]) ^ key.1 ^ secret[1])
}

/// The bucket index and the slot tag (never 0, which marks an empty slot) of a hash.
#[inline]
pub fn bucket_and_tag(hash: u64, buckets_log2: u8) -> (usize, u32) {
    let bucket = (hash & ((1u64 << buckets_log2) - 1)) as usize;
    (bucket, (hash >> 32) as u32 | 1)
}

/// One slot as the limiter reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    pub tat_ns: u64,
    pub over: u32,
    pub tag: u32,
}

/// The decision for a request at `now` from the client in `slot` (already its own, or fresh),
/// and the slot to write back.
#[inline]
pub fn decide(config: &LimiterConfig, slot: Slot, now_ns: u64) -> (LimitDecision, Slot) {
    let tat = slot.tat_ns.max(now_ns);
    if tat - now_ns <= config.burst_span_ns() {
        let next = Slot {
            tat_ns: tat.saturating_add(config.interval_ns),
            ..slot
        };
        let decision = if slot.tat_ns > now_ns {
            LimitDecision::Burst
        } else {
            LimitDecision::Serve
        };
        return (decision, next);
    }
    let over = slot.over.wrapping_add(1);
    let next = Slot { over, ..slot };
    let every = |shift: u8| shift != 0 && over & ((1u32 << shift.min(31)) - 1) == 0;
    let decision = if every(config.leak) {
        LimitDecision::Leak
    } else if every(config.kod) {
        LimitDecision::Kiss
    } else {
        LimitDecision::Drop
    };
    (decision, next)
}

impl LimitDecision {
    /// Whether the request is answered (with the time or a KoD).
    pub fn answered(self) -> bool {
        self != LimitDecision::Drop
    }

    /// Whether the client is busy: spending its burst or over its limit. Busy clients come
    /// second under the server's total cap (quota.rs).
    pub fn busy(self) -> bool {
        self != LimitDecision::Serve
    }
}

/// How a client found its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// It was there.
    Own,
    /// It was not, and took a slot nobody had used: one more client tracked.
    Empty,
    /// It was not, and took over another client's slot, which is forgotten.
    Evicted,
}

/// Which of a bucket's two slots a client with `tag` uses, what it holds for it (a fresh slot
/// when the client is not there: the one with the earlier TAT is taken over), and how.
#[inline]
pub fn choose(slots: [Slot; 2], tag: u32) -> (usize, Slot, Taken) {
    for (i, s) in slots.iter().enumerate() {
        if s.tag == tag {
            return (i, *s, Taken::Own);
        }
    }
    let victim = if slots[1].tat_ns < slots[0].tat_ns { 1 } else { 0 };
    let taken = if slots[victim].tag == 0 {
        Taken::Empty
    } else {
        Taken::Evicted
    };
    (
        victim,
        Slot {
            tat_ns: 0,
            over: 0,
            tag,
        },
        taken,
    )
}

/// The limiter: its settings, its secret and its table, shared by every thread that answers.
pub struct Limiter {
    /// The table's shape (its rate fields are the start's: `rate_*` hold the rate in force).
    config: LimiterConfig,
    /// The rate, changed live by a reload: the interval, and burst << 16 | leak << 8 | kod.
    /// A request that reads one field old and the other new is judged by a mix for once.
    rate_interval_ns: AtomicU64,
    rate_rest: AtomicU64,
    secret: [u64; 2],
    /// Two words per slot: the TAT, then `tag << 32 | over`.
    table: Box<[AtomicU64]>,
    /// Slots taken while empty (the clients tracked) and taken over (clients forgotten).
    tracked: AtomicU64,
    evicted: AtomicU64,
}

impl Limiter {
    /// A limiter with an empty table. `secret` keys the hash: draw it from a random source.
    pub fn new(config: LimiterConfig, secret: [u64; 2]) -> Limiter {
        let words = (1usize << config.buckets_log2) * 4;
        Limiter {
            config,
            rate_interval_ns: AtomicU64::new(config.interval_ns),
            rate_rest: AtomicU64::new(pack_rate(&config.rate())),
            secret,
            table: (0..words).map(|_| AtomicU64::new(0)).collect(),
            tracked: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// The settings in force (the rate as last set).
    #[inline]
    pub fn config(&self) -> LimiterConfig {
        let rest = self.rate_rest.load(Ordering::Relaxed);
        LimiterConfig {
            interval_ns: self.rate_interval_ns.load(Ordering::Relaxed),
            burst: ((rest >> 16) as u32).max(1),
            leak: (rest >> 8) as u8,
            kod: rest as u8,
            ..self.config
        }
    }

    /// Changes the rate (a reload); the table and what it knows of each client stay.
    pub fn set_rate(&self, rate: LimiterRate) {
        self.rate_interval_ns.store(rate.interval_ns, Ordering::Relaxed);
        self.rate_rest.store(pack_rate(&rate), Ordering::Relaxed);
    }

    pub fn secret(&self) -> [u64; 2] {
        self.secret
    }

    fn load(&self, bucket: usize, i: usize) -> Slot {
        let at = (bucket * 2 + i) * 2;
        let meta = self.table[at + 1].load(Ordering::Relaxed);
        Slot {
            tat_ns: self.table[at].load(Ordering::Relaxed),
            over: meta as u32,
            tag: (meta >> 32) as u32,
        }
    }

    fn store(&self, bucket: usize, i: usize, slot: Slot) {
        let at = (bucket * 2 + i) * 2;
        self.table[at].store(slot.tat_ns, Ordering::Relaxed);
        self.table[at + 1].store((slot.tag as u64) << 32 | slot.over as u64, Ordering::Relaxed);
    }

    /// The decision for a request from `client` at `now_ns`, recorded in the table.
    #[inline]
    pub fn check(&self, client: IpAddr, now_ns: u64) -> LimitDecision {
        let c = &self.config();
        let key = client_key(client, c.v4_prefix, c.v6_prefix);
        let (bucket, tag) = bucket_and_tag(client_hash(key, self.secret), c.buckets_log2);
        let (i, slot, taken) = choose([self.load(bucket, 0), self.load(bucket, 1)], tag);
        match taken {
            Taken::Own => {}
            Taken::Empty => {
                self.tracked.fetch_add(1, Ordering::Relaxed);
            }
            Taken::Evicted => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (decision, next) = decide(c, slot, now_ns);
        self.store(bucket, i, next);
        decision
    }

    /// The clients in the table (slots ever taken; a slot is never emptied, only taken over),
    /// and how many were forgotten to make room: the occupancy metric, read without a scan.
    pub fn occupancy(&self) -> (u64, u64) {
        (
            self.tracked.load(Ordering::Relaxed),
            self.evicted.load(Ordering::Relaxed),
        )
    }

    /// The slots the table has.
    pub fn capacity(&self) -> u64 {
        2u64 << self.config.buckets_log2
    }

    /// Slots in use (a tag is set), for the occupancy metric; reads the whole table.
    pub fn occupied(&self) -> usize {
        (0..self.table.len() / 2)
            .filter(|s| self.table[s * 2 + 1].load(Ordering::Relaxed) >> 32 != 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn limiter(config: LimiterConfig) -> Limiter {
        Limiter::new(config, [0x1234_5678_9abc_def0, 0x0fed_cba9_8765_4321])
    }

    fn addr(i: u32) -> IpAddr {
        IpAddr::V4((0xc633_0000 | i).into())
    }

    #[test]
    fn a_probe_and_an_iburst_are_never_limited_by_the_defaults() {
        let l = limiter(LimiterConfig::default());
        // A measurement probe: 3 back to back, then polling every 64 s.
        let mut t = 10 * S;
        assert_eq!(l.check(addr(1), t), LimitDecision::Serve);
        for _ in 0..2 {
            assert_eq!(l.check(addr(1), t), LimitDecision::Burst);
        }
        // chronyd's iburst: 4 requests 2 s apart, then every 64 s.
        for i in 0..4 {
            assert!(l.check(addr(2), t + i * 2 * S).answered());
        }
        for _ in 0..100 {
            t += 64 * S;
            assert_eq!(l.check(addr(1), t), LimitDecision::Serve);
            assert_eq!(l.check(addr(2), t), LimitDecision::Serve);
        }
    }

    #[test]
    fn a_flood_from_one_client_gets_burst_rate_and_leak() {
        let config = LimiterConfig {
            interval_ns: S / 10,
            burst: 8,
            leak: 2,
            kod: 1,
            ..LimiterConfig::default()
        };
        let l = limiter(config);
        // 100 000 requests over 10 s (10 000/s) from one address.
        let (mut served, mut leaked, mut kissed, mut dropped) = (0u64, 0u64, 0u64, 0u64);
        let n = 100_000u64;
        for i in 0..n {
            match l.check(addr(9), 5 * S + i * 10 * S / n) {
                LimitDecision::Serve | LimitDecision::Burst => served += 1,
                LimitDecision::Leak => leaked += 1,
                LimitDecision::Kiss => kissed += 1,
                LimitDecision::Drop => dropped += 1,
            }
        }
        // Within the limit: the burst, then one per interval over 10 s.
        assert!((100 + 8 - 1..=100 + 8 + 1).contains(&served), "{served}");
        let over = n - served;
        // 1 in 4 leaked; of the rest, those with an odd count kissed... exactly by the counter.
        assert_eq!(leaked, over / 4);
        assert_eq!(kissed + dropped, over - leaked);
        assert!(kissed > 0 && dropped > 0);
        // KoDs are limited too: never more than half of what is over the limit.
        assert!(kissed <= over / 2 + 1);
    }

    #[test]
    fn a_new_rate_applies_at_once_and_the_table_remembers_its_clients() {
        let l = limiter(LimiterConfig::default());
        // A client polling every 0.5 s is over the default limit (1 s) once its burst is spent.
        let decisions = |l: &Limiter, from: u64| -> Vec<LimitDecision> {
            (0..40).map(|i| l.check(addr(3), from + i * S / 2)).collect()
        };
        let before = decisions(&l, 10 * S);
        assert!(before
            .iter()
            .any(|d| !matches!(d, LimitDecision::Serve | LimitDecision::Burst)));
        let (tracked, _) = l.occupancy();
        l.set_rate(LimiterRate {
            interval_ns: S / 4,
            burst: 4,
            leak: 0,
            kod: 1,
        });
        assert_eq!(
            l.config().rate(),
            LimiterRate {
                interval_ns: S / 4,
                burst: 4,
                leak: 0,
                kod: 1
            }
        );
        assert_eq!(
            (l.config().buckets_log2, l.config().v6_prefix),
            (20, 64),
            "the table stays"
        );
        // The client's debt from before (its TAT ahead) is remembered: refused at first, with
        // the new rule for what is over (a KoD every other time, no leak)...
        let after = decisions(&l, 40 * S);
        assert_eq!(
            &after[..4],
            &[
                LimitDecision::Kiss,
                LimitDecision::Drop,
                LimitDecision::Kiss,
                LimitDecision::Drop
            ]
        );
        // ...then, paid, every request at 0.5 s is within the new limit.
        assert!(after[20..].iter().all(|d| d.answered()), "{after:?}");
        assert_eq!(l.occupancy().0, tracked, "the same client, not a new one");
        // Back to one a second and no leak, KoD on every other request over: refused again.
        l.set_rate(LimiterRate {
            interval_ns: S,
            burst: 2,
            leak: 0,
            kod: 1,
        });
        let again = decisions(&l, 70 * S);
        assert!(again.contains(&LimitDecision::Kiss), "{again:?}");
    }

    #[test]
    fn a_spoofed_flood_never_limits_real_clients() {
        // A small table, so the flood really fills it.
        let config = LimiterConfig {
            buckets_log2: 10,
            ..LimiterConfig::default()
        };
        let l = limiter(config);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // 1000 real clients polling every 16 s for ten minutes, under a spoofed flood of
        // 100 000 random sources per second (every one new).
        let mut t = 0;
        for _ in 0..(600 / 16) {
            for _ in 0..16 {
                for _ in 0..1000 {
                    let spoofed = IpAddr::V4((next() as u32).into());
                    l.check(spoofed, t);
                    let spoofed6 = IpAddr::V6(((next() as u128) << 64 | next() as u128).into());
                    l.check(spoofed6, t);
                }
                t += S / 100;
            }
            for c in 0..1000 {
                assert_eq!(l.check(addr(c), t), LimitDecision::Serve, "client {c} at {t}");
            }
            t += 16 * S;
        }
        assert!(l.occupied() > 1000);
        let (tracked, evicted) = l.occupancy();
        assert_eq!(tracked, l.occupied() as u64, "every slot in use was counted once");
        assert_eq!(tracked, l.capacity());
        assert!(evicted > 1_000_000, "{evicted}");
    }

    #[test]
    fn an_abusive_client_stays_tracked_while_the_table_churns() {
        let config = LimiterConfig {
            buckets_log2: 8,
            burst: 4,
            leak: 0,
            ..LimiterConfig::default()
        };
        let l = limiter(config);
        let abuser = addr(77);
        let mut t = 0;
        for _ in 0..40 {
            l.check(abuser, t);
        }
        // Light churn of one-shot clients: the abuser's far-ahead TAT keeps its slot.
        for i in 0..2_000u32 {
            t += S / 10_000;
            l.check(IpAddr::V4((0x0a00_0000 | i).into()), t);
        }
        assert_eq!(l.check(abuser, t), LimitDecision::Drop);
    }

    #[test]
    fn keys_follow_the_configured_prefixes() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(client_key(a, 32, 64), client_key(b, 32, 64));
        assert_ne!(client_key(a, 32, 128), client_key(b, 32, 128));
        let v4a: IpAddr = "198.51.100.1".parse().unwrap();
        let v4b: IpAddr = "198.51.100.200".parse().unwrap();
        assert_ne!(client_key(v4a, 32, 64), client_key(v4b, 32, 64));
        assert_eq!(client_key(v4a, 24, 64), client_key(v4b, 24, 64));
        // IPv4 never shares a key with IPv6's ::/64.
        assert_ne!(client_key(v4a, 0, 64), client_key("::".parse().unwrap(), 32, 0));
        assert_eq!(LimiterConfig::default().table_bytes(), 32 << 20);
    }
}
