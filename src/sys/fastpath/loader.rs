//! Loading the XDP program, attaching it to the interface and owning it until it is detached.
//!
//! Order of attempts, each falling back to the next with a log line saying why:
//! 1. the device-bound variant (hardware receive stamps), loaded through libbpf (`devbound`),
//!    attached in driver mode;
//! 2. the plain variant, loaded and attached by aya in driver mode;
//! 3. the plain variant in skb (generic) mode, only when the driver has no XDP at all
//!    (EOPNOTSUPP), with a warning: it runs after the kernel built an skb, so most of the gain
//!    is gone.
//!
//! Every attachment is a bpf_link: the kernel detaches it when its descriptor closes, which
//! covers every way this process can end (Drop on a clean stop, an error or a panic, and the
//! kernel itself after SIGKILL). A strata program found on the interface at start was
//! therefore attached some other way (by hand with `ip link set ... xdp`, or by a build that
//! used netlink) and is stale: it is replaced. Any other program is left alone unless
//! `--force` is given.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

use super::abi::{
    XdpAdmitConfig, XdpConfig, XdpCounter, XdpCounters, ACL_ALLOW, ACL_DENY, ADMIT_ACL_V4, ADMIT_ACL_V6,
    ADMIT_LIMIT, ADMIT_QUOTA, CFG_ANSWER, CFG_CHECK_V4, CFG_CHECK_V6, DENY_DROP, DENY_KISS_DENY,
    DENY_KISS_RSTR, MAPS, MAP_ACL_V4, MAP_ACL_V6, MAP_ADDRS_V4, MAP_ADDRS_V6, MAP_ADMIT, MAP_CONFIG,
    MAP_COUNTERS, MAP_LIMITER, MAP_PHC, MAP_SAMPLES, MAP_STATE, MAP_XSKS, MAX_ACL_RULES, MAX_ADDRS,
    MAX_QUEUES, PROGRAM_NAME,
};
use super::iface::Interface;
use super::state_map::StateMap;
use super::{devbound, existing, program};
use crate::proto::admission::{AclAction, DenyAction, LimiterConfig, Prefix, QuotaConfig};

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Device-bound, in the driver: hardware receive stamps when the NIC gives them.
    DeviceBound,
    /// In the driver.
    Driver,
    /// Generic XDP, after the kernel built an skb (the driver has no XDP).
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::DeviceBound => "driver mode, device-bound",
            AttachMode::Driver => "driver mode",
            AttachMode::Skb => "skb (generic) mode",
        })
    }
}

/// What the program is told at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOptions {
    /// UDP port of requests (123).
    pub ntp_port: u16,
    /// Replace an XDP program that is not strata's.
    pub force: bool,
    /// Answer plain requests in the program (XDP_TX) instead of redirecting them.
    pub answer: bool,
    /// Who is answered: the same settings as the socket path's `Admitter`.
    pub admission: AdmissionOptions,
}

/// Admission as the program applies it (`xdp-prog/strata_admit.h`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionOptions {
    pub rules: Vec<(Prefix, AclAction)>,
    pub deny_action: DenyAction,
    /// The limiter's settings and its hash's secret; None: no rate limiting.
    pub limiter: Option<(LimiterConfig, [u64; 2])>,
    /// The server's total cap and the shares it is split in (one per receive queue the server
    /// serves, over all its interfaces: each CPU keeps one share); None: no cap.
    pub quota: Option<QuotaConfig>,
    /// 1 in 2^sample_shift requests sampled for `strata clients`; 0: none.
    pub sample_shift: u8,
}

/// The loaded, attached program and its maps. Dropping it detaches the program.
pub struct XdpProgram {
    ebpf: Ebpf,
    interface: String,
    index: u32,
    /// How it is attached; None until [`XdpProgram::attach`] succeeded.
    mode: Option<AttachMode>,
    /// The device-bound program and its link (dropped, that is closed, to detach).
    devbound: Option<(OwnedFd, OwnedFd)>,
    /// aya's link, when aya attached the plain program.
    aya_link: Option<aya::programs::xdp::XdpLinkId>,
    /// The stale strata program this one replaced, for the log.
    pub replaced: Option<existing::Existing>,
}

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

/// The OS error at the bottom of an error chain, if there is one.
fn os_error(e: &(dyn StdError + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        cur = err.source();
    }
    None
}

/// The whole error chain on one line.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = err.source();
    }
    text
}

fn map_data<'a>(ebpf: &'a Ebpf, name: &str) -> io::Result<&'a MapData> {
    match ebpf.map(name) {
        Some(
            Map::XskMap(d)
            | Map::PerCpuArray(d)
            | Map::Array(d)
            | Map::HashMap(d)
            | Map::LpmTrie(d)
            | Map::RingBuf(d),
        ) => Ok(d),
        Some(_) => Err(other(format!("map {name} has an unexpected type"))),
        None => Err(other(format!("map {name} is missing from the XDP object"))),
    }
}

fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> io::Result<&'a mut Map> {
    ebpf.map_mut(name)
        .ok_or_else(|| other(format!("map {name} is missing from the XDP object")))
}

impl XdpProgram {
    /// Clears the way on the interface (see [`clear_the_way`]) and loads the object: its maps
    /// are created and configured, no program runs yet. Register the sockets, then
    /// [`XdpProgram::attach`], so that no request is redirected to a queue without a socket.
    pub fn load(iface: &Interface, addrs: &[IpAddr], options: &ProgramOptions) -> io::Result<XdpProgram> {
        let replaced = clear_the_way(iface, options.force)?;
        // The limiter's table is sized at load: as configured, or one bucket when it is off.
        let buckets = options
            .admission
            .limiter
            .map_or(1, |(limiter, _)| 1u32 << limiter.buckets_log2);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(MAP_LIMITER, buckets)
            .load(program::PLAIN)
            .map_err(|e| {
                other(format!(
                    "cannot load the XDP object (rate limiter table of {buckets} buckets): {}",
                    chain(&e)
                ))
            })?;
        configure(&mut ebpf, options, addrs)?;
        configure_admission(&mut ebpf, &options.admission)?;
        Ok(XdpProgram {
            ebpf,
            interface: iface.name.clone(),
            index: iface.index,
            mode: None,
            devbound: None,
            aya_link: None,
            replaced,
        })
    }

    /// Attaches the program: device-bound when `device_bound` and the kernel and driver
    /// allow it, else the plain program (driver mode, or skb mode when the driver has no XDP).
    pub fn attach(&mut self, device_bound: bool) -> io::Result<AttachMode> {
        if device_bound {
            match self.attach_device_bound(self.index) {
                Ok(()) => return Ok(AttachMode::DeviceBound),
                Err(e) => log::info!(
                    "{}: the device-bound XDP program (hardware receive stamps) did not load or attach \
                     ({e}); using the plain program",
                    self.interface
                ),
            }
        }
        self.attach_plain(self.index)?;
        Ok(self.mode.expect("set by attach_plain"))
    }

    fn attach_device_bound(&mut self, ifindex: u32) -> io::Result<()> {
        let fds = MAPS
            .iter()
            .map(|name| Ok((*name, map_data(&self.ebpf, name)?.fd().as_fd().as_raw_fd())))
            .collect::<io::Result<Vec<(&str, RawFd)>>>()?;
        let prog = devbound::load(ifindex, &fds)?;
        let link = devbound::attach(&prog, ifindex)?;
        self.devbound = Some((prog, link));
        self.mode = Some(AttachMode::DeviceBound);
        Ok(())
    }

    fn attach_plain(&mut self, ifindex: u32) -> io::Result<()> {
        let xdp: &mut Xdp = self
            .ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| other(format!("program {PROGRAM_NAME} is missing from the XDP object")))?
            .try_into()
            .map_err(|e| other(format!("{PROGRAM_NAME} is not an XDP program: {e}")))?;
        xdp.load()
            .map_err(|e| other(format!("the kernel refused the XDP program: {}", chain(&e))))?;
        match xdp.attach_to_if_index(ifindex, XdpMode::Driver) {
            Ok(link) => {
                self.aya_link = Some(link);
                self.mode = Some(AttachMode::Driver);
                Ok(())
            }
            Err(e) if os_error(&e) == Some(libc::EOPNOTSUPP) => {
                log::warn!(
                    "{}: the driver has no XDP support ({}); attaching in skb (generic) mode, which \
                     runs after the kernel built an skb and loses most of the fast path's gain",
                    self.interface,
                    chain(&e)
                );
                let link = xdp.attach_to_if_index(ifindex, XdpMode::Skb).map_err(|e| {
                    other(format!(
                        "cannot attach the XDP program in skb mode either: {}",
                        chain(&e)
                    ))
                })?;
                self.aya_link = Some(link);
                self.mode = Some(AttachMode::Skb);
                Ok(())
            }
            Err(e) => Err(other(format!(
                "cannot attach the XDP program in driver mode: {}",
                chain(&e)
            ))),
        }
    }

    pub fn mode(&self) -> Option<AttachMode> {
        self.mode
    }

    /// Directs queue `queue`'s requests to the AF_XDP socket `fd`.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> io::Result<()> {
        if queue >= MAX_QUEUES {
            return Err(other(format!(
                "queue {queue} is beyond the {MAX_QUEUES} the program has room for"
            )));
        }
        let mut xsks = XskMap::try_from(map_mut(&mut self.ebpf, MAP_XSKS)?)
            .map_err(|e| other(format!("map {MAP_XSKS}: {e}")))?;
        xsks.set(queue, fd, 0).map_err(|e| {
            other(format!(
                "cannot register the AF_XDP socket of queue {queue}: {}",
                chain(&e)
            ))
        })
    }

    /// The program's counters, summed over the CPUs.
    pub fn counters(&self) -> io::Result<XdpCounters> {
        let map = self
            .ebpf
            .map(MAP_COUNTERS)
            .ok_or_else(|| other(format!("map {MAP_COUNTERS} is missing")))?;
        let array = PerCpuArray::<_, u64>::try_from(map).map_err(|e| other(e.to_string()))?;
        let mut out = XdpCounters::default();
        for counter in XdpCounter::ALL {
            let values = array.get(&counter.index(), 0).map_err(|e| other(e.to_string()))?;
            out.0[counter.index() as usize] = values.iter().sum();
        }
        Ok(out)
    }

    /// A writable mapping of the state map, for the control thread to publish into (see
    /// [`StateMap`]). Until the first publication the program answers nothing itself.
    pub fn state_map(&self) -> io::Result<StateMap> {
        StateMap::map(map_data(&self.ebpf, MAP_STATE)?.fd().as_fd(), &self.interface)
    }

    /// A writable mapping of the PHC map, for the PHC thread to publish the interface's line
    /// into.
    pub fn phc_map(&self) -> io::Result<super::phc_map::PhcMap> {
        super::phc_map::PhcMap::map(map_data(&self.ebpf, MAP_PHC)?.fd().as_fd(), &self.interface)
    }

    /// The loaded program's descriptor (for BPF_PROG_TEST_RUN in tests), once attached by aya.
    pub fn program_fd(&self) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        if let Some((prog, _)) = &self.devbound {
            return Ok(prog.as_fd());
        }
        let xdp: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .ok_or_else(|| other(format!("program {PROGRAM_NAME} is missing from the XDP object")))?
            .try_into()
            .map_err(|e| other(format!("{PROGRAM_NAME} is not an XDP program: {e}")))?;
        xdp.fd()
            .map(|fd| fd.as_fd())
            .map_err(|e| other(format!("the XDP program is not loaded: {e}")))
    }

    /// A duplicate of the counters map's descriptor, for a reader on another thread
    /// ([`super::stats::ProgramCounterReader`]) that must not borrow the program.
    /// Replaces the access list `old` with `new` and the denied clients' action, in the running
    /// program (a reload): the new rules are written first, then the old ones no longer given
    /// are removed, then the flags and the action; each step is a map update the program sees
    /// at once, so the whole change is in force within the time of a few system calls.
    pub fn update_access_rules(
        &mut self,
        old: &[(Prefix, AclAction)],
        new: &[(Prefix, AclAction)],
        deny_action: DenyAction,
    ) -> io::Result<()> {
        check_rule_counts(new)?;
        insert_rules(&mut self.ebpf, new)?;
        let gone: Vec<(Prefix, AclAction)> = old
            .iter()
            .filter(|(p, _)| !new.iter().any(|(q, _)| q == p))
            .copied()
            .collect();
        remove_rules(&mut self.ebpf, &gone)?;
        let mut map = Array::<_, XdpAdmitConfig>::try_from(map_mut(&mut self.ebpf, MAP_ADMIT)?)
            .map_err(|e| other(format!("map {MAP_ADMIT}: {e}")))?;
        let mut config = map
            .get(&0, 0)
            .map_err(|e| other(format!("cannot read the XDP admission config: {e}")))?;
        config.flags = (config.flags & !(ADMIT_ACL_V4 | ADMIT_ACL_V6)) | acl_flags(new);
        config.deny_action = deny_code(deny_action);
        map.set(0, config, 0)
            .map_err(|e| other(format!("cannot write the XDP admission config: {e}")))
    }

    /// Changes the rate limiter's rate and the total cap's share (a reload): one update of the
    /// admission config, which the program reads whole for each request. The limiter and the
    /// cap must be on in the program already, or off and given None: their tables are not made
    /// or dropped here.
    pub fn update_rates(
        &mut self,
        limiter: Option<crate::proto::admission::LimiterRate>,
        quota: Option<QuotaConfig>,
    ) -> io::Result<()> {
        let mut map = Array::<_, XdpAdmitConfig>::try_from(map_mut(&mut self.ebpf, MAP_ADMIT)?)
            .map_err(|e| other(format!("map {MAP_ADMIT}: {e}")))?;
        let mut config = map
            .get(&0, 0)
            .map_err(|e| other(format!("cannot read the XDP admission config: {e}")))?;
        if (config.flags & ADMIT_LIMIT != 0) != limiter.is_some()
            || (config.flags & ADMIT_QUOTA != 0) != quota.is_some()
        {
            return Err(other(
                "the rate limiter or the total cap would be switched on or off".into(),
            ));
        }
        if let Some(rate) = limiter {
            let shape = LimiterConfig::default().with_rate(rate);
            config.interval_ns = shape.interval_ns;
            config.burst_span_ns = shape.burst_span_ns();
            config.leak = rate.leak;
            config.kod = rate.kod;
        }
        if let Some(quota) = quota {
            config.quota_interval_ns = quota.interval_ns;
        }
        map.set(0, config, 0)
            .map_err(|e| other(format!("cannot write the XDP admission config: {e}")))
    }

    /// The ring of sampled requests for `strata clients`, taken out of the program (once: a
    /// second call is an error).
    pub fn take_samples(&mut self) -> io::Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(MAP_SAMPLES)
            .ok_or_else(|| other(format!("map {MAP_SAMPLES} is missing or was taken")))?;
        RingBuf::try_from(map).map_err(|e| other(format!("map {MAP_SAMPLES}: {e}")))
    }

    pub fn counters_map_fd(&self) -> io::Result<OwnedFd> {
        map_data(&self.ebpf, MAP_COUNTERS)?
            .fd()
            .as_fd()
            .try_clone_to_owned()
    }

    /// Detaches the program (also done on drop). Idempotent.
    pub fn detach(&mut self) {
        self.mode = None;
        // Closing the link descriptor detaches the device-bound program.
        self.devbound = None;
        if let Some(link) = self.aya_link.take() {
            if let Some(program) = self.ebpf.program_mut(PROGRAM_NAME) {
                let xdp: Result<&mut Xdp, _> = program.try_into();
                if let Ok(xdp) = xdp {
                    if let Err(e) = xdp.detach(link) {
                        log::warn!(
                            "{}: detaching the XDP program failed: {}",
                            self.interface,
                            chain(&e)
                        );
                    }
                }
            }
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Handles what is already attached to the interface: nothing, a stale strata program
/// (replaced), or someone else's (an error, unless `force`).
fn clear_the_way(iface: &Interface, force: bool) -> io::Result<Option<existing::Existing>> {
    let found = existing::query(iface.index)
        .map_err(|e| other(format!("cannot query the XDP program of {}: {e}", iface.name)))?;
    let mut replaced = None;
    for program in found {
        let ours = program.name == PROGRAM_NAME;
        if !ours && !force {
            return Err(other(format!(
                "{} already has an XDP program (id {}, name {:?}, {} mode) that is not strata's; \
                 strata replaces it only with --force",
                iface.name,
                program.id,
                program.name,
                program.mode_name()
            )));
        }
        match existing::detach(iface.index, &program) {
            Ok(()) => {
                if ours {
                    log::info!(
                        "{}: replaced a stale strata XDP program (id {}, {} mode) left by an earlier run",
                        iface.name,
                        program.id,
                        program.mode_name()
                    );
                } else {
                    log::warn!(
                        "{}: --force: detached XDP program id {} ({:?}, {} mode)",
                        iface.name,
                        program.id,
                        program.name,
                        program.mode_name()
                    );
                }
                replaced = Some(program);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(other(if ours {
                    format!(
                        "{}: another running strata serves on this interface (its XDP program id {} \
                         is held by a live bpf_link)",
                        iface.name, program.id
                    )
                } else {
                    format!(
                        "{}: XDP program id {} ({:?}) is held by a bpf_link of a running process and \
                         cannot be replaced",
                        iface.name, program.id, program.name
                    )
                }));
            }
            Err(e) => {
                return Err(other(format!(
                    "{}: cannot detach XDP program id {}: {e}",
                    iface.name, program.id
                )))
            }
        }
    }
    Ok(replaced)
}

/// Fills the config map and the address maps.
fn configure(ebpf: &mut Ebpf, options: &ProgramOptions, addrs: &[IpAddr]) -> io::Result<()> {
    let mut flags = if options.answer { CFG_ANSWER } else { 0 };
    {
        let mut v4 = HashMap::<_, u32, u8>::try_from(map_mut(ebpf, MAP_ADDRS_V4)?)
            .map_err(|e| other(format!("map {MAP_ADDRS_V4}: {e}")))?;
        for addr in addrs.iter().filter_map(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }) {
            // The program compares the header's bytes as they are: network order.
            v4.insert(u32::from_ne_bytes(addr.octets()), 1, 0)
                .map_err(|e| other(format!("cannot add {addr} to the XDP address map: {e}")))?;
            flags |= CFG_CHECK_V4;
        }
    }
    {
        let mut v6 = HashMap::<_, [u8; 16], u8>::try_from(map_mut(ebpf, MAP_ADDRS_V6)?)
            .map_err(|e| other(format!("map {MAP_ADDRS_V6}: {e}")))?;
        for addr in addrs.iter().filter_map(|a| match a {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }) {
            v6.insert(addr.octets(), 1, 0)
                .map_err(|e| other(format!("cannot add {addr} to the XDP address map: {e}")))?;
            flags |= CFG_CHECK_V6;
        }
    }
    if addrs.len() > 2 * MAX_ADDRS {
        return Err(other(format!("more than {MAX_ADDRS} addresses per family")));
    }
    let mut config = Array::<_, XdpConfig>::try_from(map_mut(ebpf, MAP_CONFIG)?)
        .map_err(|e| other(format!("map {MAP_CONFIG}: {e}")))?;
    config
        .set(
            0,
            XdpConfig {
                ntp_port_be: options.ntp_port.to_be(),
                flags,
                reserved: 0,
            },
            0,
        )
        .map_err(|e| other(format!("cannot write the XDP config: {e}")))
}

/// The value of an access-list rule in the tries.
fn rule_value(action: AclAction) -> u8 {
    match action {
        AclAction::Allow => ACL_ALLOW,
        AclAction::Deny => ACL_DENY,
    }
}

/// Refuses more rules of a family than its trie holds.
fn check_rule_counts(rules: &[(Prefix, AclAction)]) -> io::Result<()> {
    for (v4, family) in [(true, "IPv4"), (false, "IPv6")] {
        let n = rules.iter().filter(|(p, _)| p.addr.is_ipv4() == v4).count();
        if n > MAX_ACL_RULES as usize {
            return Err(other(format!(
                "{n} {family} access-list rules: the XDP program has room for {MAX_ACL_RULES}"
            )));
        }
    }
    Ok(())
}

/// Inserts (or overwrites) `rules` in the tries.
fn insert_rules(ebpf: &mut Ebpf, rules: &[(Prefix, AclAction)]) -> io::Result<()> {
    {
        let mut trie = LpmTrie::<_, [u8; 4], u8>::try_from(map_mut(ebpf, MAP_ACL_V4)?)
            .map_err(|e| other(format!("map {MAP_ACL_V4}: {e}")))?;
        for (prefix, action) in rules {
            if let std::net::IpAddr::V4(addr) = prefix.addr {
                trie.insert(
                    &Key::new(prefix.len as u32, addr.octets()),
                    rule_value(*action),
                    0,
                )
                .map_err(|e| other(format!("cannot add {prefix} to the XDP access list: {e}")))?;
            }
        }
    }
    let mut trie = LpmTrie::<_, [u8; 16], u8>::try_from(map_mut(ebpf, MAP_ACL_V6)?)
        .map_err(|e| other(format!("map {MAP_ACL_V6}: {e}")))?;
    for (prefix, action) in rules {
        if let std::net::IpAddr::V6(addr) = prefix.addr {
            trie.insert(
                &Key::new(prefix.len as u32, addr.octets()),
                rule_value(*action),
                0,
            )
            .map_err(|e| other(format!("cannot add {prefix} to the XDP access list: {e}")))?;
        }
    }
    Ok(())
}

/// Removes the rules of these prefixes from the tries.
fn remove_rules(ebpf: &mut Ebpf, rules: &[(Prefix, AclAction)]) -> io::Result<()> {
    {
        let mut trie = LpmTrie::<_, [u8; 4], u8>::try_from(map_mut(ebpf, MAP_ACL_V4)?)
            .map_err(|e| other(format!("map {MAP_ACL_V4}: {e}")))?;
        for (prefix, _) in rules {
            if let std::net::IpAddr::V4(addr) = prefix.addr {
                trie.remove(&Key::new(prefix.len as u32, addr.octets()))
                    .map_err(|e| other(format!("cannot remove {prefix} from the XDP access list: {e}")))?;
            }
        }
    }
    let mut trie = LpmTrie::<_, [u8; 16], u8>::try_from(map_mut(ebpf, MAP_ACL_V6)?)
        .map_err(|e| other(format!("map {MAP_ACL_V6}: {e}")))?;
    for (prefix, _) in rules {
        if let std::net::IpAddr::V6(addr) = prefix.addr {
            trie.remove(&Key::new(prefix.len as u32, addr.octets()))
                .map_err(|e| other(format!("cannot remove {prefix} from the XDP access list: {e}")))?;
        }
    }
    Ok(())
}

/// The admission config's access-list flags for `rules`.
fn acl_flags(rules: &[(Prefix, AclAction)]) -> u8 {
    let mut flags = 0;
    if rules.iter().any(|(p, _)| p.addr.is_ipv4()) {
        flags |= ADMIT_ACL_V4;
    }
    if rules.iter().any(|(p, _)| !p.addr.is_ipv4()) {
        flags |= ADMIT_ACL_V6;
    }
    flags
}

fn deny_code(action: DenyAction) -> u8 {
    match action {
        DenyAction::Drop => DENY_DROP,
        DenyAction::KissDeny => DENY_KISS_DENY,
        DenyAction::KissRstr => DENY_KISS_RSTR,
    }
}

/// Fills the access-list tries and the admission config.
fn configure_admission(ebpf: &mut Ebpf, admission: &AdmissionOptions) -> io::Result<()> {
    check_rule_counts(&admission.rules)?;
    insert_rules(ebpf, &admission.rules)?;
    let mut flags = acl_flags(&admission.rules);
    let mut config = XdpAdmitConfig {
        deny_action: deny_code(admission.deny_action),
        sample_shift: admission.sample_shift,
        // The sampled client keys use the limiter's prefixes, or its defaults without it.
        v4_prefix: LimiterConfig::default().v4_prefix,
        v6_prefix: LimiterConfig::default().v6_prefix,
        ..XdpAdmitConfig::default()
    };
    if let Some((limiter, secret)) = admission.limiter {
        flags |= ADMIT_LIMIT;
        config.interval_ns = limiter.interval_ns;
        config.burst_span_ns = limiter.burst_span_ns();
        config.secret = secret;
        config.bucket_mask = (1u32 << limiter.buckets_log2) - 1;
        config.leak = limiter.leak;
        config.kod = limiter.kod;
        config.v4_prefix = limiter.v4_prefix;
        config.v6_prefix = limiter.v6_prefix;
    }
    if let Some(quota) = admission.quota {
        flags |= ADMIT_QUOTA;
        config.quota_interval_ns = quota.interval_ns;
        config.quota_quiet_span_ns = quota.quiet_span_ns;
        config.quota_busy_span_ns = quota.busy_span_ns;
    }
    config.flags = flags;
    let mut map = Array::<_, XdpAdmitConfig>::try_from(map_mut(ebpf, MAP_ADMIT)?)
        .map_err(|e| other(format!("map {MAP_ADMIT}: {e}")))?;
    map.set(0, config, 0)
        .map_err(|e| other(format!("cannot write the XDP admission config: {e}")))
}
