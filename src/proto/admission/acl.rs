//! Allow and deny lists of IPv4 and IPv6 prefixes. The most specific prefix that holds the
//! client decides (as chrony's allow/deny do); a client no prefix holds is allowed. The XDP
//! program does the same with one LPM trie per family, filled from [`Acl::rules`].

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a prefix says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclAction {
    Allow,
    Deny,
}

/// An address prefix: `198.51.100.0/24`, `2001:db8::/32`, or a bare address (a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The address with every bit beyond `len` cleared.
    pub addr: IpAddr,
    pub len: u8,
}

/// An address as 128 bits (IPv4 in the low 32) and its family's width.
fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The top `len` bits of a `width`-bit value.
fn mask(value: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        value & (u128::MAX << (width - len)) & (u128::MAX >> (128 - width))
    }
}

impl Prefix {
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let (value, width) = bits(addr);
        if len > width {
            return Err(format!("prefix length {len} is longer than {width} bits"));
        }
        let masked = mask(value, len, width);
        if masked != value {
            return Err(format!(
                "{addr}/{len} has host bits set (the prefix is {}/{len})",
                Self::addr_of(masked, width)
            ));
        }
        Ok(Prefix { addr, len })
    }

    /// Whether `addr` is in the prefix (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        let (value, width) = bits(addr);
        let (prefix, prefix_width) = bits(self.addr);
        width == prefix_width && mask(value, self.len, width) == prefix
    }

    fn addr_of(value: u128, width: u8) -> IpAddr {
        if width == 32 {
            IpAddr::V4((value as u32).into())
        } else {
            IpAddr::V6(value.into())
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(text: &str) -> Result<Prefix, String> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address or prefix"))?;
        let width = bits(addr).1;
        let len = match len {
            None => width,
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| format!("{text:?}: the prefix length is not a number from 0 to {width}"))?,
        };
        Prefix::new(addr, len).map_err(|e| format!("{text:?}: {e}"))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One family's rules: for each prefix length present, longest first, the masked prefixes.
#[derive(Debug, Default, Clone)]
struct Family {
    by_len: Vec<(u8, HashMap<u128, AclAction>)>,
}

impl Family {
    fn lookup(&self, value: u128, width: u8) -> Option<AclAction> {
        self.by_len
            .iter()
            .find_map(|(len, rules)| rules.get(&mask(value, *len, width)).copied())
    }
}

/// The access list.
#[derive(Debug, Default, Clone)]
pub struct Acl {
    v4: Family,
    v6: Family,
    rules: Vec<(Prefix, AclAction)>,
}

impl Acl {
    /// Adds a rule. The same prefix twice with different actions is an error (which would win is
    /// not obvious to whoever reads the configuration); twice with the same action is one rule.
    pub fn add(&mut self, prefix: Prefix, action: AclAction) -> Result<(), String> {
        let (value, width) = bits(prefix.addr);
        let family = if width == 32 { &mut self.v4 } else { &mut self.v6 };
        let at = match family.by_len.iter().position(|(l, _)| *l == prefix.len) {
            Some(at) => at,
            None => {
                family.by_len.push((prefix.len, HashMap::new()));
                family.by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
                family
                    .by_len
                    .iter()
                    .position(|(l, _)| *l == prefix.len)
                    .expect("just added")
            }
        };
        match family.by_len[at].1.insert(value, action) {
            Some(old) if old != action => {
                family.by_len[at].1.insert(value, old);
                Err(format!("{prefix} is both allowed and denied"))
            }
            Some(_) => Ok(()),
            None => {
                self.rules.push((prefix, action));
                Ok(())
            }
        }
    }

    /// What the most specific prefix holding `client` says; Allow when none does.
    #[inline]
    pub fn lookup(&self, client: IpAddr) -> AclAction {
        let (value, width) = bits(client);
        let family = if width == 32 { &self.v4 } else { &self.v6 };
        family.lookup(value, width).unwrap_or(AclAction::Allow)
    }

    /// Every rule, in the order added (for the XDP program's tries and for display).
    pub fn rules(&self) -> &[(Prefix, AclAction)] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_prefix_contains_its_addresses_only() {
        let p: Prefix = "198.51.100.0/24".parse().unwrap();
        assert!(p.contains("198.51.100.7".parse().unwrap()));
        assert!(p.contains("::ffff:198.51.100.7".parse().unwrap()));
        assert!(!p.contains("198.51.101.7".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let all: Prefix = "::/0".parse().unwrap();
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        assert!(!all.contains("192.0.2.1".parse().unwrap()));
    }
    use super::*;
    use proptest::prelude::*;

    fn acl(rules: &[(&str, AclAction)]) -> Acl {
        let mut acl = Acl::default();
        for (p, a) in rules {
            acl.add(p.parse().unwrap(), *a).unwrap();
        }
        acl
    }

    #[test]
    fn the_most_specific_prefix_wins() {
        use AclAction::*;
        let acl = acl(&[
            ("0.0.0.0/0", Deny),
            ("198.51.100.0/24", Allow),
            ("198.51.100.128/25", Deny),
            ("198.51.100.200", Allow),
            ("2001:db8::/32", Deny),
            ("2001:db8:1::/48", Allow),
        ]);
        let at = |a: &str| acl.lookup(a.parse().unwrap());
        assert_eq!(at("203.0.113.1"), Deny);
        assert_eq!(at("198.51.100.1"), Allow);
        assert_eq!(at("198.51.100.129"), Deny);
        assert_eq!(at("198.51.100.200"), Allow);
        assert_eq!(at("2001:db8::1"), Deny);
        assert_eq!(at("2001:db8:1::1"), Allow);
        // No IPv6 rule holds this one: allowed (the IPv4 0/0 does not reach IPv6).
        assert_eq!(at("2001:db9::1"), Allow);
        assert_eq!(Acl::default().lookup("192.0.2.1".parse().unwrap()), Allow);
    }

    #[test]
    fn prefixes_parse_and_refuse_what_is_wrong() {
        assert_eq!("192.0.2.1".parse::<Prefix>().unwrap().len, 32);
        assert_eq!("::/0".parse::<Prefix>().unwrap().len, 0);
        for bad in [
            "192.0.2.1/24",
            "192.0.2.0/33",
            "2001:db8::1/32",
            "example.net",
            "1.2.3.0/x",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        let e = "192.0.2.1/24".parse::<Prefix>().unwrap_err();
        assert!(e.contains("the prefix is 192.0.2.0/24"), "{e}");
        let mut acl = Acl::default();
        acl.add("192.0.2.0/24".parse().unwrap(), AclAction::Allow)
            .unwrap();
        acl.add("192.0.2.0/24".parse().unwrap(), AclAction::Allow)
            .unwrap();
        let e = acl
            .add("192.0.2.0/24".parse().unwrap(), AclAction::Deny)
            .unwrap_err();
        assert!(e.contains("both allowed and denied"), "{e}");
        assert_eq!(acl.rules().len(), 1);
        assert_eq!(acl.lookup("192.0.2.9".parse().unwrap()), AclAction::Allow);
    }

    proptest! {
        /// Against a plain scan: the longest matching rule, else Allow.
        #[test]
        fn lookup_is_the_longest_match(
            rules in proptest::collection::vec((any::<u32>(), 0u8..=32, any::<bool>()), 0..12),
            probes in proptest::collection::vec(any::<u32>(), 1..20),
        ) {
            let mut acl = Acl::default();
            let mut kept: Vec<(u32, u8, AclAction)> = Vec::new();
            for (a, len, allow) in rules {
                let m = if len == 0 { 0 } else { a & (u32::MAX << (32 - len)) };
                let action = if allow { AclAction::Allow } else { AclAction::Deny };
                let prefix = Prefix::new(IpAddr::V4(m.into()), len).unwrap();
                if acl.add(prefix, action).is_ok() && !kept.iter().any(|k| k.0 == m && k.1 == len) {
                    kept.push((m, len, action));
                }
            }
            for p in probes {
                let want = kept
                    .iter()
                    .filter(|(m, len, _)| *len == 0 || p & (u32::MAX << (32 - len)) == *m)
                    .max_by_key(|(_, len, _)| *len)
                    .map_or(AclAction::Allow, |k| k.2);
                prop_assert_eq!(acl.lookup(IpAddr::V4(p.into())), want);
            }
        }
    }
}
