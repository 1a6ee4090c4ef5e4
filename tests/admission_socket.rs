//! The access list on the socket path, on loopback: the same rules as the XDP program's
//! (tests/admission_lab.rs), applied by the socket responders themselves.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use strata_test_support::*;

fn ask(bind: &str, server: SocketAddr) -> String {
    let s = UdpSocket::bind(bind).expect("bind a loopback address");
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.send_to(&client_request(0x23, 48), server).unwrap();
    let mut buf = [0u8; 128];
    match s.recv(&mut buf) {
        Err(_) => "nothing".into(),
        Ok(48) if buf[1] == 0 => String::from_utf8_lossy(&buf[12..16]).into_owned(),
        Ok(48) if buf[1] == 1 && buf[0] & 7 == 4 => "time".into(),
        Ok(n) => format!("bad reply {:02x?}", &buf[..n]),
    }
}

/// strata on loopback (IPv4 and IPv6, one port) with `rules`; the server and its two addresses.
fn serve(rules: &[&str]) -> (Server, SocketAddr, SocketAddr) {
    let port = free_udp_port();
    let (v4, v6) = (format!("127.0.0.1:{port}"), format!("[::1]:{port}"));
    let mut args = vec![
        "--listen",
        &v4,
        "--listen",
        &v6,
        "--local-stratum",
        "1",
        "--cores",
        "0",
        "--metrics",
        "off",
        "--control",
        "off",
    ];
    args.extend_from_slice(rules);
    let server = Server::start(None, &args, Some(v4.parse().unwrap()));
    (server, v4.parse().unwrap(), v6.parse().unwrap())
}

#[test]
fn a_denied_prefix_gets_its_kod_and_a_more_specific_allow_the_time() {
    let (server, to4, to6) = serve(&[
        "--deny",
        "127.0.0.0/8",
        "--allow",
        "127.0.0.2",
        "--deny",
        "::/0",
        "--allow",
        "::1",
        "--deny-action",
        "kiss-deny",
    ]);
    assert_eq!(ask("127.0.0.3:0", to4), "DENY");
    assert_eq!(ask("127.0.0.2:0", to4), "time");
    assert_eq!(ask("[::1]:0", to6), "time");
    drop(server);

    // Denied with the default action: nothing at all, on IPv6 too.
    let (server, to4, to6) = serve(&["--deny", "::1"]);
    assert_eq!(ask("[::1]:0", to6), "nothing");
    assert_eq!(ask("127.0.0.1:0", to4), "time");
    drop(server);
}
