//! The kernel's netdev-family answers (`xsk-features`), as the netlink parsers read them:
//! arbitrary bytes as a reply to either request never panic, and a parsed device's
//! transmit-timestamp answer always agrees with its raw xsk-features bits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::wire::netdev::{parse_dev, parse_family_id, NETDEV_XSK_FLAGS_TX_TIMESTAMP};

fuzz_target!(|data: &[u8]| {
    let seq = data.first().map_or(0, |b| u32::from(b & 3));
    let _ = parse_family_id(data, seq);
    if let Ok(dev) = parse_dev(data, seq) {
        assert_eq!(
            dev.tx_timestamp(),
            dev.xsk_features.map(|f| f & NETDEV_XSK_FLAGS_TX_TIMESTAMP != 0)
        );
        let _ = (dev.xdp_feature_names(), dev.xsk_feature_names());
    }
});
