//! The kernel's generic netlink family "netdev", as far as strata asks it: what a device's XDP
//! and AF_XDP support is (Documentation/netlink/specs/netdev.yaml, include/uapi/linux/netdev.h).
//! The one question that matters here is `xsk-features`: whether the driver fills an AF_XDP
//! frame's transmit timestamp into its TX metadata (`tx-timestamp`,
//! Documentation/networking/xsk-tx-metadata.rst).
//!
//! Two requests, both built into a caller's buffer: CTRL_CMD_GETFAMILY to learn the family's
//! id (generic netlink ids are assigned at boot), then NETDEV_CMD_DEV_GET for one ifindex. The
//! parsers take whatever bytes the kernel (or anyone) returned and never panic: every length is
//! checked against the buffer, and what does not fit is an error.

/// `struct nlmsghdr`: length, type, flags, sequence, port id.
pub const NLMSG_HDRLEN: usize = 16;
/// `struct genlmsghdr`: command, version, two reserved bytes.
pub const GENL_HDRLEN: usize = 4;
/// `struct nlattr`: length, type.
pub const NLA_HDRLEN: usize = 4;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// The attribute type without NLA_F_NESTED and NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The generic netlink controller (`GENL_ID_CTRL`) and what is asked of it.
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// `NETDEV_FAMILY_NAME`, `NETDEV_FAMILY_VERSION`.
pub const NETDEV_FAMILY: &str = "netdev";
const NETDEV_FAMILY_VERSION: u8 = 1;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
const NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: u16 = 5;
const NETDEV_A_DEV_XSK_FEATURES: u16 = 6;

/// `enum netdev_xsk_flags`.
pub const NETDEV_XSK_FLAGS_TX_TIMESTAMP: u64 = 1;
pub const NETDEV_XSK_FLAGS_TX_CHECKSUM: u64 = 2;
pub const NETDEV_XSK_FLAGS_TX_LAUNCH_TIME_FIFO: u64 = 4;
/// `enum netdev_xdp_act`: the names `ynl` prints, by bit.
const XDP_ACT_NAMES: [&str; 7] = [
    "basic",
    "redirect",
    "ndo-xmit",
    "xsk-zerocopy",
    "hw-offload",
    "rx-sg",
    "ndo-xmit-sg",
];
/// `enum netdev_xdp_rx_metadata`.
pub const NETDEV_XDP_RX_METADATA_TIMESTAMP: u64 = 1;
/// `enum netdev_xsk_flags`: the names `ynl` prints, by bit.
const XSK_FLAG_NAMES: [&str; 3] = ["tx-timestamp", "tx-checksum", "tx-launch-time-fifo"];

/// The largest request built here: a GETFAMILY with the name "netdev" is 32 bytes.
pub const REQUEST_CAPACITY: usize = 64;

/// Why a reply could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetlinkError {
    /// A header or attribute runs past the end of the bytes (or claims less than itself).
    Truncated,
    /// The kernel refused the request with this errno (ENOENT: no such family or device;
    /// EOPNOTSUPP, EINVAL: a kernel that does not know the command).
    Kernel(i32),
    /// Nothing in the reply answered the request (wrong sequence number, type or command).
    NoAnswer,
    /// The answer lacks an attribute it must have.
    Missing(&'static str),
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetlinkError::Truncated => f.write_str("truncated netlink message"),
            NetlinkError::Kernel(errno) => write!(f, "the kernel answered errno {errno}"),
            NetlinkError::NoAnswer => f.write_str("no answer to the request in the reply"),
            NetlinkError::Missing(what) => write!(f, "the answer has no {what} attribute"),
        }
    }
}

impl std::error::Error for NetlinkError {}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes a request with one attribute into `buf`; returns its length.
fn request(
    buf: &mut [u8; REQUEST_CAPACITY],
    kind: u16,
    seq: u32,
    cmd: u8,
    version: u8,
    attr: u16,
    value: &[u8],
) -> usize {
    buf.fill(0);
    let attr_len = NLA_HDRLEN + value.len();
    let len = NLMSG_HDRLEN + GENL_HDRLEN + align4(attr_len);
    assert!(len <= REQUEST_CAPACITY, "a request built here fits its buffer");
    buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    buf[4..6].copy_from_slice(&kind.to_ne_bytes());
    buf[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    buf[8..12].copy_from_slice(&seq.to_ne_bytes());
    // Port id 0: the kernel fills in ours.
    buf[16] = cmd;
    buf[17] = version;
    let a = NLMSG_HDRLEN + GENL_HDRLEN;
    buf[a..a + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
    buf[a + 2..a + 4].copy_from_slice(&attr.to_ne_bytes());
    buf[a + 4..a + 4 + value.len()].copy_from_slice(value);
    len
}

/// CTRL_CMD_GETFAMILY for the "netdev" family.
pub fn family_request(buf: &mut [u8; REQUEST_CAPACITY], seq: u32) -> usize {
    let mut name = [0u8; NETDEV_FAMILY.len() + 1];
    name[..NETDEV_FAMILY.len()].copy_from_slice(NETDEV_FAMILY.as_bytes());
    request(
        buf,
        GENL_ID_CTRL,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
        CTRL_ATTR_FAMILY_NAME,
        &name,
    )
}

/// NETDEV_CMD_DEV_GET for the device `ifindex`, to the family with id `family`.
pub fn dev_get_request(buf: &mut [u8; REQUEST_CAPACITY], family: u16, seq: u32, ifindex: u32) -> usize {
    request(
        buf,
        family,
        seq,
        NETDEV_CMD_DEV_GET,
        NETDEV_FAMILY_VERSION,
        NETDEV_A_DEV_IFINDEX,
        &ifindex.to_ne_bytes(),
    )
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The netlink messages in `buf`: (type, sequence, payload). Stops with an error at the first
/// header that does not fit.
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(u16, u32, &[u8]), NetlinkError>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= buf.len() {
            return None;
        }
        let len = u32_at(buf, at).map(|l| l as usize);
        let item = match len {
            Some(len) if len >= NLMSG_HDRLEN && at + len <= buf.len() => {
                let kind = u16_at(buf, at + 4).unwrap_or(0);
                let seq = u32_at(buf, at + 8).unwrap_or(0);
                let payload = &buf[at + NLMSG_HDRLEN..at + len];
                at += align4(len);
                Ok((kind, seq, payload))
            }
            _ => {
                at = buf.len();
                Err(NetlinkError::Truncated)
            }
        };
        Some(item)
    })
}

/// The attributes in `buf`: (type without flags, value). Stops with an error at the first one
/// that does not fit.
fn attributes(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NetlinkError>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + NLA_HDRLEN > buf.len() {
            return (at < buf.len()).then(|| {
                at = buf.len();
                Err(NetlinkError::Truncated)
            });
        }
        let len = usize::from(u16_at(buf, at).unwrap_or(0));
        let kind = u16_at(buf, at + 2).unwrap_or(0) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || at + len > buf.len() {
            at = buf.len();
            return Some(Err(NetlinkError::Truncated));
        }
        let value = &buf[at + NLA_HDRLEN..at + len];
        at += align4(len);
        Some(Ok((kind, value)))
    })
}

/// The attributes of the answer to request `seq` with command `cmd` in `reply`; a kernel error
/// for that request is returned as such.
fn answer(reply: &[u8], seq: u32, cmd: u8) -> Result<&[u8], NetlinkError> {
    for message in messages(reply) {
        let (kind, msg_seq, payload) = message?;
        if msg_seq != seq || kind == NLMSG_DONE {
            continue;
        }
        if kind == NLMSG_ERROR {
            let errno = u32_at(payload, 0).ok_or(NetlinkError::Truncated)? as i32;
            if errno != 0 {
                return Err(NetlinkError::Kernel(errno.saturating_neg()));
            }
            // An acknowledgement: the answer, if any, came before it.
            continue;
        }
        if payload.len() < GENL_HDRLEN {
            return Err(NetlinkError::Truncated);
        }
        if payload[0] == cmd {
            return Ok(&payload[GENL_HDRLEN..]);
        }
    }
    Err(NetlinkError::NoAnswer)
}

/// The family id in the controller's answer to [`family_request`] `seq`.
pub fn parse_family_id(reply: &[u8], seq: u32) -> Result<u16, NetlinkError> {
    // The controller answers GETFAMILY with CTRL_CMD_NEWFAMILY (1).
    let attrs = answer(reply, seq, 1)?;
    for attr in attributes(attrs) {
        let (kind, value) = attr?;
        if kind == CTRL_ATTR_FAMILY_ID {
            return u16_at(value, 0).ok_or(NetlinkError::Truncated);
        }
    }
    Err(NetlinkError::Missing("CTRL_ATTR_FAMILY_ID"))
}

/// What the kernel says of a device's XDP and AF_XDP support. An attribute the kernel did not
/// send is None: older kernels lack the newer ones (xdp-rx-metadata-features and xsk-features
/// arrived with Linux 6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DevFeatures {
    pub ifindex: u32,
    pub xdp_features: Option<u64>,
    pub xdp_zc_max_segs: Option<u32>,
    pub xdp_rx_metadata_features: Option<u64>,
    pub xsk_features: Option<u64>,
}

/// A u64 attribute (the kernel writes it with nla_put_u64_64bit; a shorter value is malformed).
fn u64_value(value: &[u8]) -> Result<u64, NetlinkError> {
    Ok(u64::from_ne_bytes(
        value
            .get(..8)
            .ok_or(NetlinkError::Truncated)?
            .try_into()
            .map_err(|_| NetlinkError::Truncated)?,
    ))
}

/// The device's features in the answer to [`dev_get_request`] `seq`.
pub fn parse_dev(reply: &[u8], seq: u32) -> Result<DevFeatures, NetlinkError> {
    // The netdev family answers DEV_GET with the same command.
    let attrs = answer(reply, seq, NETDEV_CMD_DEV_GET)?;
    let mut ifindex = None;
    let mut dev = DevFeatures::default();
    for attr in attributes(attrs) {
        let (kind, value) = attr?;
        match kind {
            NETDEV_A_DEV_IFINDEX => ifindex = Some(u32_at(value, 0).ok_or(NetlinkError::Truncated)?),
            NETDEV_A_DEV_XDP_FEATURES => dev.xdp_features = Some(u64_value(value)?),
            NETDEV_A_DEV_XDP_ZC_MAX_SEGS => {
                dev.xdp_zc_max_segs = Some(u32_at(value, 0).ok_or(NetlinkError::Truncated)?)
            }
            NETDEV_A_DEV_XDP_RX_METADATA_FEATURES => dev.xdp_rx_metadata_features = Some(u64_value(value)?),
            NETDEV_A_DEV_XSK_FEATURES => dev.xsk_features = Some(u64_value(value)?),
            // The pad attribute, and whatever later kernels add.
            _ => {}
        }
    }
    dev.ifindex = ifindex.ok_or(NetlinkError::Missing("NETDEV_A_DEV_IFINDEX"))?;
    Ok(dev)
}

/// The names of the bits set in `bits`, `ynl`'s way ("basic redirect"); unknown bits as hex.
fn flag_names(bits: u64, names: &[&str]) -> String {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if bits & (1 << i) != 0 {
            out.push((*name).to_string());
        }
    }
    let unknown = bits & !((1u64 << names.len()) - 1);
    if unknown != 0 {
        out.push(format!("{unknown:#x}"));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(" ")
    }
}

impl DevFeatures {
    /// Whether the driver fills the transmit timestamp of an AF_XDP frame that asks for it
    /// (None: the kernel does not say, being older than xsk-features).
    pub fn tx_timestamp(&self) -> Option<bool> {
        self.xsk_features.map(|f| f & NETDEV_XSK_FLAGS_TX_TIMESTAMP != 0)
    }

    /// xdp-features as names.
    pub fn xdp_feature_names(&self) -> Option<String> {
        self.xdp_features.map(|f| flag_names(f, &XDP_ACT_NAMES))
    }

    /// xsk-features as names.
    pub fn xsk_feature_names(&self) -> Option<String> {
        self.xsk_features.map(|f| flag_names(f, &XSK_FLAG_NAMES))
    }
}

#[cfg(test)]
mod tests;
