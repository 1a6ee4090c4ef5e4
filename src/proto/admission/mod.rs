//! Who gets an answer: the access list and the per-client rate limiter, the one definition of
//! admission. The socket path calls [`Admitter::admit`] for each request; the XDP program applies
//! the same rules in C (`xdp-prog/strata_admit.h`) for both XDP tiers, with the same key
//! derivation, hash and limiter arithmetic, and tests/xdp_admission_diff.rs holds the two to
//! each other.
//!
//! - [`acl`]: allow and deny prefixes, the most specific one wins;
//! - [`limiter`]: a keyed, direct-mapped table of per-client GCRA buckets with a burst and a
//!   leak, bounded in memory, that a spoofed flood cannot turn against real clients.

pub mod acl;
pub mod limiter;

use std::net::IpAddr;

use crate::proto::respond::{Admission, KissCode};
pub use acl::{Acl, AclAction, Prefix};
pub use limiter::{LimitDecision, Limiter, LimiterConfig};

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

/// The access list, what denied clients get, and the rate limiter (None: off).
pub struct Admitter {
    pub acl: Acl,
    pub deny_action: DenyAction,
    pub limiter: Option<Limiter>,
}

impl Admitter {
    /// Everyone is served, nobody is limited.
    pub fn open() -> Admitter {
        Admitter {
            acl: Acl::default(),
            deny_action: DenyAction::Drop,
            limiter: None,
        }
    }

    /// The decision for a request from `client` at `now_ns` (any clock that does not go back;
    /// the limiter measures intervals on it).
    #[inline]
    pub fn admit(&self, client: IpAddr, now_ns: u64) -> Verdict {
        if self.acl.lookup(client) == AclAction::Deny {
            return match self.deny_action {
                DenyAction::Drop => Verdict::DropDenied,
                DenyAction::KissDeny => Verdict::Answer(Admission::Kiss(KissCode::Deny)),
                DenyAction::KissRstr => Verdict::Answer(Admission::Kiss(KissCode::Rstr)),
            };
        }
        match &self.limiter {
            None => Verdict::Answer(Admission::Serve),
            Some(limiter) => match limiter.check(client, now_ns) {
                LimitDecision::Serve | LimitDecision::Leak => Verdict::Answer(Admission::Serve),
                LimitDecision::Kiss => Verdict::Answer(Admission::Kiss(KissCode::Rate)),
                LimitDecision::Drop => Verdict::DropLimited,
            },
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
        let mut admitter = Admitter {
            acl,
            deny_action: DenyAction::KissRstr,
            limiter: None,
        };
        let denied: IpAddr = "198.51.100.8".parse().unwrap();
        let allowed: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            admitter.admit(denied, 0),
            Verdict::Answer(Admission::Kiss(KissCode::Rstr))
        );
        assert_eq!(admitter.admit(allowed, 0), Verdict::Answer(Admission::Serve));
        admitter.deny_action = DenyAction::Drop;
        assert_eq!(admitter.admit(denied, 0), Verdict::DropDenied);
        assert_eq!(Verdict::DropDenied.admission(), None);
    }
}
