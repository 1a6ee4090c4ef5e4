//! Who gets an answer: the access list and the per-client rate limiter, the one definition of
//! admission. The socket path calls [`Admitter::admit`] for each request; the XDP program applies
//! the same rules in C (`xdp-prog/strata_admit.h`) for both XDP tiers, with the same key
//! derivation, hash and limiter arithmetic, and tests/xdp_answer_diff.rs holds the two to
//! each other.
//!
//! - [`acl`]: allow and deny prefixes, the most specific one wins;
//! - [`limiter`]: a keyed, direct-mapped table of per-client GCRA buckets with a burst and a
//!   leak, bounded in memory, that a spoofed flood cannot turn against real clients.

pub mod acl;
pub mod limiter;
pub mod quota;
pub mod samples;
pub mod talkers;

use std::net::IpAddr;

use crate::proto::respond::{Admission, KissCode};
pub use acl::{Acl, AclAction, Prefix};
pub use limiter::{LimitDecision, Limiter, LimiterConfig, LimiterRate};
pub use quota::{Quota, QuotaConfig};

/// What a denied client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyAction {
    /// Nothing (counted).
    #[default]
    Drop,
    /// A Kiss-o'-Death DENY.
    KissDeny,
    /// A Kiss-o'-Death RSTR.
    KissRstr,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it (with the time, or a KoD: see the [`Admission`]).
    Answer(Admission),
    /// Denied by the access list; nothing is sent.
    DropDenied,
    /// Over its rate; nothing is sent.
    DropLimited,
    /// Over the server's total cap; nothing is sent.
    DropQuota,
}

impl Verdict {
    /// The admission to answer with, None for a drop.
    pub fn admission(self) -> Option<Admission> {
        match self {
            Verdict::Answer(a) => Some(a),
            _ => None,
        }
    }
}

/// The access list and what denied clients get: replaced whole on a reload.
#[derive(Debug, Clone, Default)]
pub struct AccessRules {
    pub acl: Acl,
    pub deny_action: DenyAction,
}

/// The access rules, the rate limiter and the server's total cap (None: off), and where sampled
/// requests go for `strata clients` (None: nowhere). The rules can be replaced while requests
/// are admitted ([`Admitter::set_rules`]): a request sees the old rules or the new, never a mix.
pub struct Admitter {
    rules: arc_swap::ArcSwap<AccessRules>,
    pub limiter: Option<Limiter>,
    pub quota: Option<Quota>,
    pub samples: Option<Sampling>,
}

/// 1 in 2^shift requests go to the ring, keyed by the limiter's prefixes.
pub struct Sampling {
    pub shift: u8,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub ring: samples::SampleRing,
}

impl Admitter {
    /// Changes the limiter's rate and the total cap (a reload). Both must be on already, or
    /// off and given None: their tables are made at start.
    pub fn set_rates(&self, limiter: Option<LimiterRate>, quota: Option<QuotaConfig>) -> Result<(), String> {
        if self.limiter.is_some() != limiter.is_some() || self.quota.is_some() != quota.is_some() {
            return Err("the rate limiter or the total cap would be switched on or off".into());
        }
        if let (Some(l), Some(rate)) = (&self.limiter, limiter) {
            l.set_rate(rate);
        }
        if let (Some(q), Some(config)) = (&self.quota, quota) {
            q.set_rate(config);
        }
        Ok(())
    }

    /// Admission by the access list `acl` alone; add the rest with the builders below.
    pub fn new(acl: Acl, deny_action: DenyAction) -> Admitter {
        Admitter {
            rules: arc_swap::ArcSwap::from_pointee(AccessRules { acl, deny_action }),
            limiter: None,
            quota: None,
            samples: None,
        }
    }

    /// Everyone is served, nobody is limited.
    pub fn open() -> Admitter {
        Admitter::new(Acl::default(), DenyAction::Drop)
    }

    pub fn limited(mut self, limiter: Option<Limiter>) -> Admitter {
        self.limiter = limiter;
        self
    }

    pub fn capped(mut self, quota: Option<Quota>) -> Admitter {
        self.quota = quota;
        self
    }

    pub fn sampled(mut self, samples: Option<Sampling>) -> Admitter {
        self.samples = samples;
        self
    }

    /// Replaces the access rules (a reload); requests admitted meanwhile see the old or the new.
    pub fn set_rules(&self, rules: AccessRules) {
        self.rules.store(std::sync::Arc::new(rules));
    }

    /// The access rules in force.
    pub fn rules(&self) -> std::sync::Arc<AccessRules> {
        self.rules.load_full()
    }

    /// [`Admitter::admit`], and the request sampled for `strata clients` when `draw`, a random
    /// number from the caller, falls in the sampled share.
    #[inline]
    pub fn admit_sampled(&self, client: IpAddr, now_ns: u64, draw: u32) -> Verdict {
        let verdict = self.admit(client, now_ns);
        if let Some(s) = &self.samples {
            if s.shift != 0 && draw & ((1u32 << s.shift.min(31)) - 1) == 0 {
                s.ring.push(talkers::Sample {
                    key: limiter::client_key(client, s.v4_prefix, s.v6_prefix),
                    verdict: match verdict {
                        Verdict::Answer(Admission::Serve) => talkers::SampleVerdict::Served,
                        Verdict::Answer(Admission::Kiss(_)) => talkers::SampleVerdict::Kissed,
                        Verdict::DropDenied => talkers::SampleVerdict::Denied,
                        Verdict::DropLimited => talkers::SampleVerdict::Limited,
                        Verdict::DropQuota => talkers::SampleVerdict::OverQuota,
                    },
                });
            }
        }
        verdict
    }

    /// The decision for a request from `client` at `now_ns` (any clock that does not go back;
    /// the limiter and the cap measure intervals on it). Whatever would be sent, the time or a
    /// KoD, counts against the total cap.
    #[inline]
    pub fn admit(&self, client: IpAddr, now_ns: u64) -> Verdict {
        let rules = self.rules.load();
        let (admission, busy) = if rules.acl.lookup(client) == AclAction::Deny {
            match rules.deny_action {
                DenyAction::Drop => return Verdict::DropDenied,
                DenyAction::KissDeny => (Admission::Kiss(KissCode::Deny), true),
                DenyAction::KissRstr => (Admission::Kiss(KissCode::Rstr), true),
            }
        } else {
            match &self.limiter {
                None => (Admission::Serve, false),
                Some(limiter) => {
                    let decision = limiter.check(client, now_ns);
                    let admission = match decision {
                        LimitDecision::Serve | LimitDecision::Burst | LimitDecision::Leak => Admission::Serve,
                        LimitDecision::Kiss => Admission::Kiss(KissCode::Rate),
                        LimitDecision::Drop => return Verdict::DropLimited,
                    };
                    (admission, decision.busy())
                }
            }
        };
        match &self.quota {
            Some(quota) if !quota.take(now_ns, busy) => Verdict::DropQuota,
            _ => Verdict::Answer(admission),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_over_the_limiter_and_takes_its_action() {
        let mut acl = Acl::default();
        acl.add("198.51.100.0/24".parse().unwrap(), AclAction::Deny)
            .unwrap();
        acl.add("198.51.100.7/32".parse().unwrap(), AclAction::Allow)
            .unwrap();
        let admitter = Admitter::new(acl.clone(), DenyAction::KissRstr);
        let denied: IpAddr = "198.51.100.8".parse().unwrap();
        let allowed: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            admitter.admit(denied, 0),
            Verdict::Answer(Admission::Kiss(KissCode::Rstr))
        );
        assert_eq!(admitter.admit(allowed, 0), Verdict::Answer(Admission::Serve));
        admitter.set_rules(AccessRules {
            acl,
            deny_action: DenyAction::Drop,
        });
        assert_eq!(admitter.admit(denied, 0), Verdict::DropDenied);
        assert_eq!(admitter.admit(allowed, 0), Verdict::Answer(Admission::Serve));
        admitter.set_rules(AccessRules::default());
        assert_eq!(admitter.admit(denied, 0), Verdict::Answer(Admission::Serve));
        assert_eq!(Verdict::DropDenied.admission(), None);
    }

    #[test]
    fn the_total_cap_serves_quiet_clients_first() {
        const S: u64 = 1_000_000_000;
        // A cap of 1000/s; 500 clients polling every second (500/s, within their rate) and 20
        // abusers at 1000/s each, every one within the leak share of its own limit.
        let admitter = Admitter::open()
            .limited(Some(Limiter::new(LimiterConfig::default(), [7, 11])))
            .capped(Some(Quota::new(QuotaConfig::share_of(1000, 1))));
        let quiet = |i: u32| IpAddr::V4((0x0a00_0000 | i).into());
        let abuser = |i: u32| IpAddr::V4((0xc000_0000 | i).into());
        let (mut quiet_served, mut abusers_served, mut over_quota) = (0u64, 0u64, 0u64);
        for ms in 0..10_000u64 {
            let t = 100 * S + ms * 1_000_000;
            for a in 0..20 {
                match admitter.admit(abuser(a), t + a as u64) {
                    Verdict::Answer(_) => abusers_served += 1,
                    Verdict::DropQuota => over_quota += 1,
                    _ => {}
                }
            }
            if ms % 2 == 0 {
                // One per millisecond pair: every client once a second.
                let c = (ms / 2 % 500) as u32;
                assert_eq!(
                    admitter.admit(quiet(c), t + 100),
                    Verdict::Answer(Admission::Serve),
                    "quiet client {c} at {ms} ms"
                );
                quiet_served += 1;
            }
        }
        assert_eq!(quiet_served, 5_000);
        assert!(
            over_quota > 0,
            "the abusers' leak alone is over what the quiet ones leave"
        );
        // 10 s at 1000/s plus the 0.1 s burst, less the quiet clients' share.
        assert!(abusers_served + quiet_served <= 10_000 + 101, "{abusers_served}");
        assert!(abusers_served >= 4_500, "{abusers_served}");
    }
}
