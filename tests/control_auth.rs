//! The control engine with a source that has a key (`key N`), without I/O: its requests carry
//! the key's MAC; a reply without one, with another key or with a wrong digest is rejected and
//! logged once per change; a reply signed with the key is measured. Replies come from strata's
//! own `respond_mac`, so the two sides are checked against each other.

mod sim;

use std::sync::Arc;

use sim::*;
use strata::proto::auth::{respond_mac, Key, KeyTable, KeyType};
use strata::proto::clock::ClockParams;
use strata::proto::control::auth::AuthFailure;
use strata::proto::control::engine::Engine;
use strata::proto::control::events::Event;
use strata::proto::control::source::Association;
use strata::proto::control::spec::SourceOptions;
use strata::proto::respond::Admission;
use strata::proto::wire::NtpTimestamp;
use strata_test_support::synced;

const SECOND: i64 = 1_000_000_000;

#[test]
fn a_source_with_a_key_signs_its_requests_and_uses_only_signed_replies() {
    let setup = Setup::default();
    let now = setup.true0;
    let mut engine = Engine::new(engine_config(&setup), ClockParams::identity(0), now);
    let server_keys = KeyTable::new(vec![Key::new(7, KeyType::Aes128, &[9; 16]).unwrap()]).unwrap();
    engine.set_keys(Arc::new(server_keys.clone()));
    let addr = "192.0.2.1:123".parse().unwrap();
    let options = SourceOptions {
        key: Some(7),
        minpoll: 0,
        maxpoll: 0,
        ..Default::default()
    };
    let id = engine.add_source(addr, Association::Client, options, None, now);

    let exchange = |engine: &mut Engine, at: i64, tamper: &dyn Fn(&mut Vec<u8>)| {
        engine.tick(at);
        let tx = engine.transmit(at).pop().expect("a request is due");
        let mut buf = [0u8; 72];
        let mut packet = tx.datagram(&mut buf).to_vec();
        assert_eq!(packet.len(), 48 + 4 + 16, "header and AES-CMAC MAC");
        let t = NtpTimestamp::from_unix_nanos((at + SECOND / 100) as i128);
        let reply = respond_mac(&mut packet, t, t, Admission::Serve, &synced(), &server_keys)
            .expect("strata's own server authenticates the request");
        packet.truncate(reply.len);
        tamper(&mut packet);
        engine.receive(id, &packet, at + SECOND / 50);
        engine.take_events()
    };
    let auth_events = |events: &[Event]| -> Vec<Option<AuthFailure>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Authentication { key: 7, failure, .. } => Some(*failure),
                _ => None,
            })
            .collect()
    };

    // Unsigned, then with a flipped bit, then signed: rejected twice (logged once), then used.
    let events = exchange(&mut engine, now + SECOND, &|p| p.truncate(48));
    assert_eq!(auth_events(&events), vec![Some(AuthFailure::Missing)]);
    assert!(!events.iter().any(|e| matches!(e, Event::Reachable { .. })));
    let events = exchange(&mut engine, now + 3 * SECOND, &|p| p[47] ^= 1);
    assert_eq!(
        auth_events(&events),
        vec![],
        "a second failure is not logged again"
    );
    let events = exchange(&mut engine, now + 5 * SECOND, &|_| {});
    assert_eq!(auth_events(&events), vec![None]);
    assert!(
        events.iter().any(|e| matches!(e, Event::Reachable { .. })),
        "{events:?}"
    );

    let status = engine.sources(now + 6 * SECOND)[0]
        .auth
        .expect("a source with a key");
    assert_eq!((status.key, status.passed, status.rejected), (7, 1, 2));
    assert_eq!(status.summary(), "key 7 ok");
}
