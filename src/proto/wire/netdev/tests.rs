use super::*;
use proptest::prelude::*;

/// A netlink message of `kind` and `seq` around `payload`.
fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut m = Vec::new();
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align4(m.len()), 0);
    m
}

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&((NLA_HDRLEN + value.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(value);
    a.resize(align4(a.len()), 0);
    a
}

fn genl(cmd: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![cmd, 1, 0, 0];
    for a in attrs {
        p.extend_from_slice(a);
    }
    p
}

fn ack(seq: u32, errno: i32) -> Vec<u8> {
    // nlmsgerr: the error, then the request's header.
    let mut p = (-errno).to_ne_bytes().to_vec();
    p.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
    message(NLMSG_ERROR, seq, &p)
}

/// What a 6.8+ kernel sends for a device, the pad attribute (type 2) before each u64 as
/// nla_put_u64_64bit writes it when alignment needs it.
fn dev_reply(seq: u32, ifindex: u32, xdp: u64, xsk: Option<u64>) -> Vec<u8> {
    let mut attrs = vec![
        attr(NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes()),
        attr(2, &[]),
        attr(NETDEV_A_DEV_XDP_FEATURES, &xdp.to_ne_bytes()),
        attr(NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, &0u64.to_ne_bytes()),
    ];
    if let Some(xsk) = xsk {
        attrs.push(attr(NETDEV_A_DEV_XSK_FEATURES, &xsk.to_ne_bytes()));
    }
    let mut r = message(0x1f, seq, &genl(NETDEV_CMD_DEV_GET, &attrs));
    r.extend(ack(seq, 0));
    r
}

#[test]
fn requests_are_one_attribute_each() {
    let mut buf = [0u8; REQUEST_CAPACITY];
    let n = family_request(&mut buf, 7);
    assert_eq!(n, 16 + 4 + 4 + 8, "\"netdev\\0\" is 7 bytes, padded to 8");
    assert_eq!(u32_at(&buf, 0), Some(n as u32));
    assert_eq!(u16_at(&buf, 4), Some(GENL_ID_CTRL));
    assert_eq!(u32_at(&buf, 8), Some(7));
    assert_eq!(buf[16], CTRL_CMD_GETFAMILY);
    assert_eq!(&buf[24..31], b"netdev\0");
    let n = dev_get_request(&mut buf, 0x22, 8, 5);
    assert_eq!(n, 16 + 4 + 8);
    assert_eq!(u16_at(&buf, 4), Some(0x22));
    assert_eq!(buf[16], NETDEV_CMD_DEV_GET);
    assert_eq!(u16_at(&buf, 22), Some(NETDEV_A_DEV_IFINDEX));
    assert_eq!(u32_at(&buf, 24), Some(5));
    assert!(buf[n..].iter().all(|&b| b == 0), "the rest is cleared");
}

#[test]
fn the_family_id_is_read_from_newfamily() {
    let mut r = message(
        GENL_ID_CTRL,
        3,
        &genl(
            1,
            &[
                attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"),
                attr(CTRL_ATTR_FAMILY_ID, &0x1du16.to_ne_bytes()),
            ],
        ),
    );
    r.extend(ack(3, 0));
    assert_eq!(parse_family_id(&r, 3), Ok(0x1d));
    assert_eq!(
        parse_family_id(&r, 4),
        Err(NetlinkError::NoAnswer),
        "another request's"
    );
    assert_eq!(
        parse_family_id(&ack(3, libc::ENOENT), 3),
        Err(NetlinkError::Kernel(libc::ENOENT))
    );
    let bare = message(
        GENL_ID_CTRL,
        3,
        &genl(1, &[attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0")]),
    );
    assert_eq!(
        parse_family_id(&bare, 3),
        Err(NetlinkError::Missing("CTRL_ATTR_FAMILY_ID"))
    );
}

#[test]
fn a_device_without_tx_metadata_says_so_and_an_old_kernel_says_nothing() {
    let veth_like = parse_dev(&dev_reply(9, 4, 0b111, Some(0)), 9).unwrap();
    assert_eq!(veth_like.ifindex, 4);
    assert_eq!(veth_like.xdp_features, Some(7));
    assert_eq!(veth_like.tx_timestamp(), Some(false));
    assert_eq!(veth_like.xdp_feature_names().unwrap(), "basic redirect ndo-xmit");
    assert_eq!(veth_like.xsk_feature_names().unwrap(), "none");

    let nic = parse_dev(&dev_reply(9, 2, 0b1011, Some(3)), 9).unwrap();
    assert_eq!(nic.tx_timestamp(), Some(true));
    assert_eq!(nic.xsk_feature_names().unwrap(), "tx-timestamp tx-checksum");
    let future = parse_dev(&dev_reply(9, 2, 1 << 40, Some(1 << 9)), 9).unwrap();
    assert_eq!(future.xsk_feature_names().unwrap(), "0x200");
    assert_eq!(future.tx_timestamp(), Some(false));

    let old = parse_dev(&dev_reply(9, 4, 1, None), 9).unwrap();
    assert_eq!(old.tx_timestamp(), None);
}

#[test]
fn malformed_replies_are_errors() {
    let good = dev_reply(9, 4, 1, Some(1));
    assert_eq!(
        parse_dev(&good[..good.len() - 40], 9),
        Err(NetlinkError::Truncated)
    );
    assert_eq!(parse_dev(&[], 9), Err(NetlinkError::NoAnswer));
    // A message that claims less than its own header.
    let mut tiny = good.clone();
    tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert_eq!(parse_dev(&tiny, 9), Err(NetlinkError::Truncated));
    // An attribute that claims more than the message holds.
    let mut long = good.clone();
    long[20..22].copy_from_slice(&200u16.to_ne_bytes());
    assert_eq!(parse_dev(&long, 9), Err(NetlinkError::Truncated));
    // A u64 attribute of four bytes.
    let short = message(
        0x1f,
        9,
        &genl(
            NETDEV_CMD_DEV_GET,
            &[
                attr(NETDEV_A_DEV_IFINDEX, &4u32.to_ne_bytes()),
                attr(NETDEV_A_DEV_XSK_FEATURES, &1u32.to_ne_bytes()),
            ],
        ),
    );
    assert_eq!(parse_dev(&short, 9), Err(NetlinkError::Truncated));
    // No ifindex.
    let anon = message(0x1f, 9, &genl(NETDEV_CMD_DEV_GET, &[]));
    assert_eq!(
        parse_dev(&anon, 9),
        Err(NetlinkError::Missing("NETDEV_A_DEV_IFINDEX"))
    );
    assert_eq!(
        parse_dev(&ack(9, libc::ENODEV), 9),
        Err(NetlinkError::Kernel(libc::ENODEV))
    );
}

proptest! {
    /// Any bytes: an answer or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), seq in 0u32..4) {
        let _ = parse_dev(&bytes, seq);
        let _ = parse_family_id(&bytes, seq);
    }

    /// A good reply cut short, or with one byte changed, is read as an error or as some answer:
    /// never a panic, and a cut inside the answer's message is never taken for the whole answer.
    #[test]
    fn damaged_replies_are_contained(cut in 0usize..120, at in 0usize..120, byte in any::<u8>()) {
        let good = dev_reply(9, 4, 5, Some(1));
        let whole = parse_dev(&good, 9).unwrap();
        let answer_len = good.len() - ack(9, 0).len();
        if cut < answer_len {
            prop_assert!(parse_dev(&good[..cut], 9).is_err());
        }
        let mut changed = good.clone();
        let at = at % changed.len();
        changed[at] = byte;
        let parsed = parse_dev(&changed, 9);
        // The xsk-features value is bytes 60..68 (headers 20, ifindex 8, pad 4, two u64s 12
        // each, then its own header): a change there is read as that value, nothing else.
        if (60..68).contains(&at) {
            let mut value = [0u8; 8];
            value.copy_from_slice(&changed[60..68]);
            let dev = parsed.unwrap();
            prop_assert_eq!(dev.xsk_features, Some(u64::from_ne_bytes(value)));
            prop_assert_eq!(DevFeatures { xsk_features: whole.xsk_features, ..dev }, whole);
        }
    }
}
