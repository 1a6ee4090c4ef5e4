//! Symmetric keys (RFC 5905 MACs, AES-CMAC from RFC 8573) against chronyd, both ways, in network
//! namespaces this test makes (named `strata-t<pid>-...`, removed on every exit path by
//! strata-test-support's `Netns`), joined by a veth pair in 198.18.0.0/24:
//!
//! - chronyd clients with `server ADDR key N` (MD5, SHA1, AES128) select strata, their
//!   measurements log showing every test passed (the fifth, RFC 5905's authentication test,
//!   among them); a client with a wrong secret gets nothing (strata counts `bad_mac`), and one
//!   with a key strata does not have gets crypto-NAKs, which it never selects (its measurements
//!   log fails them on the authentication test; strata counts them);
//! - strata with `key N` towards chronyd (MD5, SHA1, AES128) synchronizes and shows `key N ok`;
//!   a key whose secret differs on the two sides never passes, and a chronyd peer whose MACs are
//!   made with another secret is shown `failing (bad MAC)`;
//! - strata with a chronyd symmetric peer with a key synchronizes to it, every packet passing
//!   the key.
//!
//! `#[ignore]`d under a plain `cargo test` (root and chronyd needed); `make test` runs them.
//! Run so when not root or chronyd is missing, each says SKIPPED and passes, unless
//! STRATA_REQUIRE_INTEROP=1 (as `make test` sets), which fails it.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use strata_test_support::*;

const SHARED_KEYS: &str = "\
1 MD5 HEX:6d6435207365637265742c207369787465656e
2 SHA1 HEX:7368613120736563726574206f66207477656e747920
3 AES128 HEX:2b7e151628aed2a6abf7158809cf4f3c
";

fn lab_available() -> bool {
    Netns::available() && available("chronyd (chrony)", have_command("chronyd"))
}

fn key_file(text: &str) -> RemoveOnDrop {
    let file = RemoveOnDrop(temp_path("keys", "keys"));
    std::fs::write(&file.0, text).unwrap();
    std::fs::set_permissions(&file.0, std::fs::Permissions::from_mode(0o600)).unwrap();
    file
}

/// The `auth` of the source named `name` in the status.
fn auth_of(status: &serde_json::Value, name: &str) -> String {
    status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["auth"].as_str().unwrap_or("none").to_string())
        .unwrap_or_else(|| "missing".into())
}

/// Polls `check` for up to `secs`, panicking with `what` and the last value it saw.
fn wait_until<T: std::fmt::Debug>(secs: u64, what: &str, mut check: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (done, seen) = check();
        if done {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s; last seen: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn strata_args<'a>(control: &'a str, keys: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--listen",
        "0.0.0.0:123",
        "--cores",
        "0",
        "--metrics",
        "off",
        "--control",
        control,
        "--log-level",
        "info",
        "--rate-limit",
        "off",
        "--key-file",
        keys,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn chronyd_clients_accept_strata_authenticated_replies_and_wrong_keys_get_nothing() {
    if !lab_available() {
        return;
    }
    let cli = Netns::new("cli");
    let srv = Netns::new("srv");
    cli.veth("cli0", "198.18.0.1/24", &srv, "srv0", "198.18.0.2/24");
    let keys = key_file(SHARED_KEYS);
    let control = RemoveOnDrop(control_path("symkeys-srv"));
    let mut server = Server::start(
        Some(&srv.name),
        &strata_args(control.arg(), keys.arg(), &["--local-stratum", "1"]),
        None,
    );
    server.wait_for_log("control socket at");
    assert!(server.log().contains("3 symmetric key(s)"), "{}", server.log());

    // One chronyd client per key, and two that must get nothing: key 1 with another secret, and
    // a key strata does not have.
    let client = |key: u32, keyfile: &str| {
        Chronyd::start_configured(
            Some(&cli.name),
            &format!(
                "server 198.18.0.2 iburst minpoll 0 maxpoll 0 key {key}\nkeyfile {{dir}}/keys\n\
                 port 0\nlogdir {{dir}}\nlog measurements\n"
            ),
            &[("keys", keyfile)],
            None,
        )
    };
    let good: Vec<(&str, Chronyd)> = vec![
        ("MD5", client(1, SHARED_KEYS)),
        ("SHA1", client(2, SHARED_KEYS)),
        ("AES128", client(3, SHARED_KEYS)),
    ];
    let wrong_secret = client(1, "1 MD5 HEX:00112233445566778899aabbccddeeff0011\n");
    let unknown_key = client(9, "9 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n");

    for (name, chronyd) in &good {
        wait_until(40, &format!("chronyd with a {name} key selects strata"), || {
            let log = chronyd.log();
            (log.contains("Selected source 198.18.0.2"), log)
        });
        let measurements = std::fs::read_to_string(chronyd.dir().join("measurements.log")).unwrap();
        // Columns: date, time, address, leap, stratum, tests 1-3, tests 5-7 (5: authentication),
        // tests A-D, ...
        let passed = measurements
            .lines()
            .filter(|l| l.contains("198.18.0.2"))
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 7 && f[5] == "111" && f[6] == "111"
            })
            .count();
        assert!(
            passed > 0,
            "{name}: no sample with every test passed:\n{measurements}"
        );
        println!("chronyd with a {name} key: selected strata; {passed} authenticated sample(s)");
    }
    for (what, chronyd) in [
        ("a wrong secret", &wrong_secret),
        ("an unknown key", &unknown_key),
    ] {
        let log = chronyd.log();
        assert!(
            !log.contains("Selected source"),
            "chronyd with {what} selected a source:\n{log}"
        );
        let measurements =
            std::fs::read_to_string(chronyd.dir().join("measurements.log")).unwrap_or_default();
        // A crypto-NAK may be logged, failing the authentication test (the fifth); nothing
        // passes it.
        let authenticated = measurements
            .lines()
            .filter(|l| l.contains("198.18.0.2"))
            .any(|l| l.split_whitespace().nth(6) == Some("111"));
        assert!(
            !authenticated,
            "chronyd with {what} got an authenticated reply:\n{measurements}"
        );
    }
    let status = status_json(&control.0);
    let drops = &status["total"]["drops"];
    assert!(drops["bad_mac"].as_u64().unwrap() > 0, "{drops}");
    let naks = status["total"]["replies_crypto_nak"].as_u64().unwrap();
    assert!(naks > 0, "no crypto-NAK sent: {}", status["total"]);
    println!(
        "strata dropped {} bad_mac requests and sent {naks} crypto-NAKs",
        drops["bad_mac"]
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn strata_accepts_chronyd_authenticated_replies_and_rejects_a_wrong_key() {
    if !lab_available() {
        return;
    }
    let up = Netns::new("up");
    let srv = Netns::new("srv");
    up.veth("up0", "198.18.0.1/24", &srv, "srv0", "198.18.0.2/24");
    // chronyd answers on several addresses: one strata source each.
    for addr in [
        "198.18.0.9/24",
        "198.18.0.13/24",
        "198.18.0.17/24",
        "198.18.0.21/24",
    ] {
        up.exec("ip", &["addr", "add", addr, "dev", "up0"]);
    }
    // Key 4's secret differs between the two sides; so does key 5's, which chronyd's peer uses.
    let chronyd_keys = format!(
        "{SHARED_KEYS}4 SHA1 HEX:0000000000000000000000000000000000000004\n\
         5 MD5 HEX:00000000000000000000000000000005\n"
    );
    let strata_keys = format!(
        "{SHARED_KEYS}4 SHA1 HEX:ffffffffffffffffffffffffffffffffffffff04\n\
         5 MD5 HEX:ffffffffffffffffffffffffffffff05\n"
    );
    let _chronyd = Chronyd::start_configured(
        Some(&up.name),
        "local stratum 1\nallow\nport 123\nkeyfile {dir}/keys\n\
         peer 198.18.0.2 minpoll 0 maxpoll 0 key 5\n",
        &[("keys", &chronyd_keys)],
        None,
    );
    let keys = key_file(&strata_keys);
    let control = RemoveOnDrop(control_path("symkeys-up"));
    let mut server = Server::start(
        Some(&srv.name),
        &strata_args(
            control.arg(),
            keys.arg(),
            &[
                "--upstream",
                "198.18.0.9 iburst minpoll 0 maxpoll 1 key 1",
                "--upstream",
                "198.18.0.13 iburst minpoll 0 maxpoll 1 key 2",
                "--upstream",
                "198.18.0.17 iburst minpoll 0 maxpoll 1 key 3",
                "--upstream",
                "198.18.0.21 iburst minpoll 0 maxpoll 1 key 4",
                "--peer",
                "198.18.0.1 minpoll 0 maxpoll 0 key 5 noselect",
                "--minsources",
                "1",
            ],
        ),
        None,
    );
    server.wait_for_log("control socket at");
    wait_until(40, "strata synchronizes to chronyd", || {
        let log = server.log();
        (log.contains("synchronized to 198.18.0."), log)
    });
    let status = wait_until(40, "keys 1-3 pass and key 5 fails", || {
        let s = status_json(&control.0);
        let seen: Vec<String> = ["9", "13", "17", "21", "1"]
            .iter()
            .map(|a| auth_of(&s, &format!("198.18.0.{a}:123")))
            .collect();
        let done = seen[..3]
            .iter()
            .all(|a| a.starts_with("key ") && a.contains(" ok"))
            && seen[4].starts_with("key 5 failing");
        (done, seen)
    });
    assert!(!status[3].contains(" ok"), "key 4's secret differs: {status:?}");
    println!("strata sources: {status:?}");
    let (code, log) = server.stop();
    assert!(code.success(), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn strata_synchronizes_to_a_chronyd_peer_with_a_key() {
    if !lab_available() {
        return;
    }
    let up = Netns::new("up");
    let srv = Netns::new("srv");
    up.veth("up0", "198.18.0.1/24", &srv, "srv0", "198.18.0.2/24");
    let _chronyd = Chronyd::start_configured(
        Some(&up.name),
        "local stratum 1\nallow\nport 123\nkeyfile {dir}/keys\n\
         peer 198.18.0.2 minpoll 0 maxpoll 0 key 3\n",
        &[("keys", SHARED_KEYS)],
        None,
    );
    let keys = key_file(SHARED_KEYS);
    let control = RemoveOnDrop(control_path("symkeys-peer"));
    let mut server = Server::start(
        Some(&srv.name),
        &strata_args(
            control.arg(),
            keys.arg(),
            &[
                "--peer",
                "198.18.0.1 minpoll 0 maxpoll 0 key 3",
                "--minsources",
                "1",
                "--local-stratum",
                "5",
            ],
        ),
        None,
    );
    server.wait_for_log("control socket at");
    wait_until(40, "strata synchronizes to its chronyd peer", || {
        let log = server.log();
        (log.contains("synchronized to 198.18.0.1 stratum 2"), log)
    });
    let auth = wait_until(20, "the peer's packets pass key 3", || {
        let a = auth_of(&status_json(&control.0), "198.18.0.1:123");
        (a.starts_with("key 3 ok"), a)
    });
    // chronyd's own association does not measure strata: strata sends its peer packets from
    // the association's ephemeral port, and chronyd takes a peer's packets from port 123 only
    // (it answers them as a passive peer, authenticated with the key, which strata checks).
    println!("peers with AES128 key 3: strata {auth}");
    let (code, log) = server.stop();
    assert!(code.success(), "{log}");
}

/// The same through the XDP path: the XDP program answers only plain 48-byte requests and
/// passes MAC'd ones to the AF_XDP responder, whose pipeline answers them with the key.
#[test]
#[ignore = "needs root, network namespaces, XDP and chronyd (make test runs it)"]
fn chronyd_clients_accept_authenticated_replies_from_the_xdp_path() {
    if !Lab::available() || !lab_available() {
        return;
    }
    let lab = Lab::up();
    let keys = key_file(SHARED_KEYS);
    let control = RemoveOnDrop(control_path("symkeys-xdp"));
    let mut server = Server::start(
        Some(&lab.ns("srv")),
        &[
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--metrics",
            "off",
            "--control",
            control.arg(),
            "--rate-limit",
            "off",
            "--key-file",
            keys.arg(),
        ],
        None,
    );
    server.wait_for_log("through XDP");
    server.wait_for_log("control socket at");
    let client = |key: u32, keyfile: &str| {
        Chronyd::start_configured(
            Some(&lab.ns("cli")),
            &format!(
                "server 198.18.0.2 iburst minpoll 0 maxpoll 0 key {key}\nkeyfile {{dir}}/keys\nport 0\n"
            ),
            &[("keys", keyfile)],
            None,
        )
    };
    let good = [
        ("SHA1", client(2, SHARED_KEYS)),
        ("AES128", client(3, SHARED_KEYS)),
    ];
    let wrong_secret = client(2, "2 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n");
    for (name, chronyd) in &good {
        wait_until(
            40,
            &format!("chronyd with a {name} key selects strata's XDP path"),
            || {
                let log = chronyd.log();
                (log.contains("Selected source 198.18.0.2"), log)
            },
        );
    }
    assert!(
        !wrong_secret.log().contains("Selected source"),
        "{}",
        wrong_secret.log()
    );
    let status = status_json(&control.0);
    let total = &status["total"];
    assert!(total["drops"]["bad_mac"].as_u64().unwrap() > 0, "{total}");
    println!(
        "XDP path: chronyd with SHA1 and AES128 keys selected strata; {} bad_mac drops",
        total["drops"]["bad_mac"]
    );
    let (code, log) = server.stop();
    assert!(code.success(), "{log}");
}
