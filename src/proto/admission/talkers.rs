//! Who is asking: the most active clients, for `strata clients` (like `chronyc clients`).
//!
//! The tiers sample 1 in 2^k requests with what admission decided ([`Sample`]); the control side
//! feeds the samples to [`TopTalkers`], a Space-Saving summary (Metwally et al.) of at most
//! `capacity` clients: a sampled client that is not in the summary takes over the entry with the
//! lowest count and starts from that count, so every client sending more than 1/capacity of the
//! sampled requests is in it, whatever a spoofed spray of one-off sources does. Counts are
//! halved every [`DECAY_SECONDS`], so the list follows who is active now. Nothing here is on
//! the per-packet path: sampling is one random draw there, and a sample is 24 bytes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// How often the ranking counts are halved.
pub const DECAY_SECONDS: f64 = 60.0;

/// What admission did with a sampled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SampleVerdict {
    /// Answered with the time.
    Served,
    /// Answered with a Kiss-o'-Death (RATE, DENY or RSTR).
    Kissed,
    /// Over its rate limit: nothing sent.
    Limited,
    /// Denied by the access list: nothing sent.
    Denied,
    /// Over the server's total cap: nothing sent.
    OverQuota,
}

impl SampleVerdict {
    /// The code the XDP program writes (`enum strata_sample_verdict`) and [`SampleVerdict::code`].
    pub fn from_code(code: u8) -> Option<SampleVerdict> {
        Some(match code {
            0 => SampleVerdict::Served,
            1 => SampleVerdict::Kissed,
            2 => SampleVerdict::Limited,
            3 => SampleVerdict::Denied,
            4 => SampleVerdict::OverQuota,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One sampled request: the client key (limiter.rs `client_key`: the prefix as two halves, IPv4
/// mapped) and the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub key: (u64, u64),
    pub verdict: SampleVerdict,
}

impl Sample {
    /// A sample as the XDP program writes it (`struct strata_sample`: the key's two halves in
    /// host byte order, the verdict code, padding); None for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Sample> {
        if bytes.len() != 24 {
            return None;
        }
        let word = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Some(Sample {
            key: (word(0), word(8)),
            verdict: SampleVerdict::from_code(bytes[16])?,
        })
    }
}

/// A client as `strata clients` shows it. Counts are estimates: samples times the sampling
/// ratio, since the client entered the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Talker {
    /// The client's address or prefix (`198.51.100.7`, `2001:db8:1:2::/64`).
    pub client: String,
    pub requests: u64,
    /// Answered with the time.
    pub served: u64,
    pub kissed: u64,
    /// Dropped by the rate limiter, the access list or the total cap.
    pub limited: u64,
    pub denied: u64,
    pub over_quota: u64,
    /// Requests per second since it entered the summary.
    pub rate: f64,
    /// Seconds since its last sampled request.
    pub last_seen_ago: f64,
    /// Requests (estimated) it may have had before it entered the summary: the Space-Saving
    /// error bound.
    pub error: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    key: (u64, u64),
    /// The ranking count: samples, halved every DECAY_SECONDS, plus what it inherited.
    score: f64,
    inherited: u64,
    by_verdict: [u64; 5],
    first_seen: f64,
    last_seen: f64,
}

/// The summary. `record` and `top` take the time in seconds on any steady clock.
pub struct TopTalkers {
    capacity: usize,
    /// Each sample stands for 2^shift requests.
    shift: u8,
    v4_prefix: u8,
    v6_prefix: u8,
    entries: Vec<Entry>,
    index: HashMap<(u64, u64), usize>,
    /// Entries that may hold the lowest score (checked when taken): rebuilt by a scan when
    /// empty, so that a spray of new sources costs O(1) per sample on average.
    lowest: Vec<usize>,
    /// The score the entries in `lowest` had at the scan: scores only grow between decays
    /// (which clear `lowest`), so one that still has it is still among the lowest.
    lowest_score: f64,
    last_decay: Option<f64>,
}

impl TopTalkers {
    /// A summary of at most `capacity` clients, each sample standing for 2^`shift` requests;
    /// the prefixes say how keys are shown.
    pub fn new(capacity: usize, shift: u8, v4_prefix: u8, v6_prefix: u8) -> TopTalkers {
        TopTalkers {
            capacity: capacity.max(1),
            shift,
            v4_prefix,
            v6_prefix,
            entries: Vec::new(),
            index: HashMap::new(),
            lowest: Vec::new(),
            lowest_score: 0.0,
            last_decay: None,
        }
    }

    /// Counts one sample taken at `now` (seconds).
    pub fn record(&mut self, sample: Sample, now: f64) {
        self.decay(now);
        let i = match self.index.get(&sample.key) {
            Some(&i) => i,
            None if self.entries.len() < self.capacity => {
                self.entries.push(Entry {
                    key: sample.key,
                    score: 0.0,
                    inherited: 0,
                    by_verdict: [0; 5],
                    first_seen: now,
                    last_seen: now,
                });
                self.index.insert(sample.key, self.entries.len() - 1);
                self.entries.len() - 1
            }
            None => {
                let i = self.take_lowest();
                let e = &mut self.entries[i];
                self.index.remove(&e.key);
                let floor = e.score;
                *e = Entry {
                    key: sample.key,
                    score: floor,
                    inherited: floor.round() as u64,
                    by_verdict: [0; 5],
                    first_seen: now,
                    last_seen: now,
                };
                self.index.insert(sample.key, i);
                i
            }
        };
        let e = &mut self.entries[i];
        e.score += 1.0;
        e.by_verdict[sample.verdict.code() as usize] += 1;
        e.last_seen = now;
    }

    /// An entry with the lowest score.
    fn take_lowest(&mut self) -> usize {
        loop {
            if self.lowest.is_empty() {
                let min = self.entries.iter().map(|e| e.score).fold(f64::INFINITY, f64::min);
                self.lowest = (0..self.entries.len())
                    .filter(|&i| self.entries[i].score <= min)
                    .collect();
                // Taken from the back: keep the order of the scan.
                self.lowest.reverse();
                self.lowest_score = min;
            }
            let i = self.lowest.pop().expect("a full summary has a lowest entry");
            if self.entries[i].score <= self.lowest_score {
                return i;
            }
        }
    }

    /// Halves the ranking counts once per DECAY_SECONDS, so that the ranking follows the
    /// present; a client that stopped falls behind those that did not.
    fn decay(&mut self, now: f64) {
        let last = *self.last_decay.get_or_insert(now);
        if now - last < DECAY_SECONDS {
            return;
        }
        let halvings = ((now - last) / DECAY_SECONDS).floor();
        let factor = 0.5f64.powf(halvings);
        for e in &mut self.entries {
            e.score *= factor;
        }
        self.lowest.clear();
        self.last_decay = Some(last + halvings * DECAY_SECONDS);
    }

    /// The `n` most active clients now, most active first.
    pub fn top(&self, n: usize, now: f64) -> Vec<Talker> {
        let mut order: Vec<&Entry> = self.entries.iter().collect();
        order.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.key.cmp(&b.key)));
        let scale = |samples: u64| samples << self.shift;
        order
            .into_iter()
            .take(n)
            .map(|e| {
                let v = e.by_verdict.map(scale);
                let requests: u64 = v.iter().sum();
                Talker {
                    client: show_key(e.key, self.v4_prefix, self.v6_prefix),
                    requests,
                    served: v[0],
                    kissed: v[1],
                    limited: v[2],
                    denied: v[3],
                    over_quota: v[4],
                    rate: requests as f64 / (now - e.first_seen).max(1.0),
                    last_seen_ago: (now - e.last_seen).max(0.0),
                    error: scale(e.inherited),
                }
            })
            .collect()
    }

    /// Clients in the summary.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A client key as people read it: the address, with the prefix length when it is shorter
/// than the address.
pub fn show_key(key: (u64, u64), v4_prefix: u8, v6_prefix: u8) -> String {
    if key.0 == 0 && key.1 >> 32 == 0xffff {
        let a = Ipv4Addr::from(key.1 as u32);
        if v4_prefix >= 32 {
            a.to_string()
        } else {
            format!("{a}/{v4_prefix}")
        }
    } else {
        let a = Ipv6Addr::from((key.0 as u128) << 64 | key.1 as u128);
        if v6_prefix >= 128 {
            a.to_string()
        } else {
            format!("{a}/{v6_prefix}")
        }
    }
}

/// The address a key stands for (its prefix's first address).
pub fn key_addr(key: (u64, u64)) -> IpAddr {
    if key.0 == 0 && key.1 >> 32 == 0xffff {
        IpAddr::V4(Ipv4Addr::from(key.1 as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from((key.0 as u128) << 64 | key.1 as u128))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::admission::limiter::client_key;

    fn key(addr: &str) -> (u64, u64) {
        client_key(addr.parse().unwrap(), 32, 64)
    }

    #[test]
    fn heavy_clients_stay_on_top_through_a_spray_of_one_off_sources() {
        let mut t = TopTalkers::new(64, 4, 32, 64);
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut now = 0.0;
        for round in 0..20_000u32 {
            now += 0.001;
            // A spray: 4 new random sources per round.
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let spoofed = IpAddr::V4((rng as u32).into());
                let k = client_key(spoofed, 32, 64);
                t.record(
                    Sample {
                        key: k,
                        verdict: SampleVerdict::Served,
                    },
                    now,
                );
            }
            // Two heavy clients: a fifth and a tenth of the samples.
            t.record(
                Sample {
                    key: key("198.51.100.7"),
                    verdict: SampleVerdict::Limited,
                },
                now,
            );
            if round % 2 == 0 {
                t.record(
                    Sample {
                        key: key("2001:db8:1:2::99"),
                        verdict: SampleVerdict::Served,
                    },
                    now,
                );
            }
        }
        assert_eq!(t.len(), 64);
        let top = t.top(2, now);
        assert_eq!(top[0].client, "198.51.100.7");
        assert_eq!(top[1].client, "2001:db8:1:2::/64");
        // Samples times 16, all of them limited.
        assert!(
            top[0].requests > 16 * 19_000 && top[0].requests <= 16 * 20_000,
            "{:?}",
            top[0]
        );
        assert_eq!(top[0].limited, top[0].requests);
        assert!((top[0].rate - 16_000.0).abs() < 1_000.0, "{}", top[0].rate);
        assert!(top[1].served > 0 && top[1].limited == 0);
    }

    #[test]
    fn a_client_that_stopped_falls_behind_one_that_did_not() {
        let mut t = TopTalkers::new(8, 0, 32, 64);
        let s = |a: &str| Sample {
            key: key(a),
            verdict: SampleVerdict::Served,
        };
        for i in 0..1000 {
            t.record(s("192.0.2.1"), i as f64 * 0.01);
        }
        // Ten minutes later, a steadier client.
        for i in 0..200 {
            t.record(s("192.0.2.2"), 600.0 + i as f64 * 0.1);
        }
        let top = t.top(2, 620.0);
        assert_eq!(top[0].client, "192.0.2.2");
        assert_eq!(top[1].client, "192.0.2.1");
        assert_eq!(top[1].requests, 1000);
        assert!(top[1].last_seen_ago > 600.0);
    }

    #[test]
    fn keys_read_as_addresses_and_prefixes() {
        assert_eq!(show_key(key("192.0.2.9"), 32, 64), "192.0.2.9");
        assert_eq!(
            show_key(client_key("192.0.2.9".parse().unwrap(), 24, 64), 24, 64),
            "192.0.2.0/24"
        );
        assert_eq!(show_key(key("2001:db8::1"), 32, 64), "2001:db8::/64");
        assert_eq!(
            show_key(client_key("2001:db8::1".parse().unwrap(), 32, 128), 32, 128),
            "2001:db8::1"
        );
        assert_eq!(key_addr(key("192.0.2.9")), "192.0.2.9".parse::<IpAddr>().unwrap());
        for code in 0..5 {
            assert_eq!(SampleVerdict::from_code(code).unwrap().code(), code);
        }
        assert_eq!(SampleVerdict::from_code(5), None);
    }

    #[test]
    fn samples_parse_as_the_program_writes_them_and_nothing_else() {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&7u64.to_ne_bytes());
        bytes[8..16].copy_from_slice(&9u64.to_ne_bytes());
        bytes[16] = 2;
        assert_eq!(
            Sample::from_bytes(&bytes),
            Some(Sample {
                key: (7, 9),
                verdict: SampleVerdict::Limited
            })
        );
        bytes[16] = 9;
        assert_eq!(Sample::from_bytes(&bytes), None);
        assert_eq!(Sample::from_bytes(&bytes[..23]), None);
        assert_eq!(Sample::from_bytes(&[]), None);
    }
}
