//! The XDP/AF_XDP path end to end, in labs made by `bench/lab` under a prefix of each test's own
//! (namespaces `strata-t<pid>-lab-<n>-cli|srv|up`), removed on every exit path by [`Lab`]'s Drop
//! (strata-test-support).
//! Clients run in the cli namespace: real ones (ntpdig, chronyd) through `ip netns exec`, and
//! this file's own from a thread moved into the namespace with setns(2).
//!
//! Counters come from the server's exit log: the XDP program's line ("xdp program on srv0:
//! seen .., redirected ..") and the responders' lines and totals.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use strata::proto::wire::ethernet::{EtherType, EthernetAddress, Vlan, VlanTag};
use strata_test_support::*;

const SERVER_V4: &str = "198.18.0.2";
const SERVER_V6: &str = "fd00:5354:5241:1::2";
const READY: &str = "through XDP";

/// What these tests do with a lab of strata-test-support.
trait XdpLab {
    /// Starts `strata serve --iface srv0 ARGS` in the server namespace and waits until it serves.
    fn serve(&self, args: &[&str]) -> Server;
    fn xdp_attached(&self) -> bool;
}

impl XdpLab for Lab {
    fn serve(&self, args: &[&str]) -> Server {
        // Tests here count exact answers to bursts from one address: no rate limit in the way
        // (tests/admission_lab.rs has the limiter's own).
        let mut all = vec![
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--rate-limit",
            "off",
        ];
        all.extend_from_slice(args);
        let mut server = Server::start(Some(&self.ns("srv")), &all, None);
        server.wait_for_log(READY);
        server
    }

    fn xdp_attached(&self) -> bool {
        self.ip("srv", &["link", "show", "dev", "srv0"])
            .contains("prog/xdp")
    }
}

fn realtime_ns() -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// NTP timestamp (seconds since 1900, 32.32 fixed point) to Unix nanoseconds.
fn ntp_to_unix_ns(ts: u64) -> i128 {
    let mut secs = (ts >> 32) as i128 - 2_208_988_800;
    if secs < 0 {
        secs += 1 << 32; // NTP era 1, from 2036
    }
    secs * 1_000_000_000 + (((ts & 0xffff_ffff) as i128 * 1_000_000_000) >> 32)
}

/// One exchange from the current namespace: (send time, reply) or None after `timeout`.
fn query(server: SocketAddr, bind: &str, timeout: Duration) -> Option<(i128, Vec<u8>)> {
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let req = client_request(0x23, 48); // LI 0, VN 4, mode 3
    let sent = realtime_ns();
    sock.send_to(&req, server).ok()?;
    let mut buf = [0u8; 512];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    assert_eq!(from, server, "the reply must come from the address asked");
    Some((sent, buf[..n].to_vec()))
}

fn assert_valid_reply(reply: &[u8]) {
    assert_eq!(reply.len(), 48);
    assert_eq!(reply[0] & 7, 4, "mode 4");
    assert_eq!(reply[0] >> 6, 0, "LI 0");
    assert_eq!(reply[1], 1, "stratum 1");
    assert_eq!(&reply[12..16], b"LOCL");
    assert_eq!(
        &reply[24..32],
        &QUERY_TRANSMIT.to_be_bytes(),
        "origin = our transmit"
    );
}

/// The counters a test checks, from the exit log.
struct Totals {
    /// Answered by the XDP program itself (XDP_TX).
    answered: u64,
    redirected: u64,
    passed: u64,
    requests: u64,
    replies: u64,
    xdp_stamps: u64,
}

fn totals(log: &str) -> Totals {
    let program = log_line(log, "xdp program on srv0:");
    let total = log_line(log, "total:");
    assert!(
        !log.contains("socket responder"),
        "the socket path must not run:\n{log}"
    );
    Totals {
        answered: log_field(program, "answered"),
        redirected: log_field(program, "redirected"),
        passed: log_field(program, "passed"),
        requests: log_field(total, "total:"),
        replies: log_field(total, "bytes),"),
        xdp_stamps: log_field(total, "xdp"),
    }
}

fn stop(server: Server) -> String {
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}:\n{log}");
    log
}

/// ntpdig three times and chronyd once against a server started with `args`, each checked;
/// the server's exit log.
fn real_clients(args: &[&str]) -> Option<String> {
    if !Lab::available()
        || !available("ntpdig (Debian package ntpsec-ntpdig)", have_command("ntpdig"))
        || !available("chronyd (Debian package chrony)", have_command("chronyd"))
    {
        return None;
    }
    let lab = Lab::up();
    let server = lab.serve(args);
    for _ in 0..3 {
        let out = lab.exec("cli", "ntpdig", &["-j", "-t", "2", SERVER_V4]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ntpdig failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("\"stratum\":1"), "{stdout}");
        assert!(stdout.contains("\"leap\":\"no-leap\""), "{stdout}");
    }
    let out = lab.exec(
        "cli",
        "chronyd",
        &[
            "-Q",
            "-t",
            "8",
            "-f",
            "/dev/null",
            &format!("server {SERVER_V4} iburst maxsamples 4"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let offset: f64 = text
        .split("System clock wrong by ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("chronyd did not accept the server:\n{text}"));
    assert!(offset.abs() < 1e-3, "offset {offset} s:\n{text}");

    let log = stop(server);
    assert!(!lab.xdp_attached(), "a clean stop leaves no XDP program");
    Some(log)
}

#[test]
#[ignore = "needs root, network namespaces, XDP, ntpdig and chronyd (make test runs it)"]
fn real_clients_are_answered_by_the_xdp_program() {
    let Some(log) = real_clients(&["--cores", "0"]) else {
        return;
    };
    let t = totals(&log);
    // Their requests are plain (48 bytes, mode 3): every one answered with XDP_TX (3 from
    // ntpdig, and chronyd's, as many as it chose to send), none left to the responders. They
    // come from a local stack over veth with default offloads: unfinished UDP checksums.
    assert!(t.answered > 3, "{log}");
    assert_eq!((t.redirected, t.requests), (0, 0), "{log}");
    // veth runs the device-bound program (the one that will carry hardware stamps): every map of
    // the plain program must be reusable by it, or strata silently falls back.
    assert!(log.contains("(driver mode, device-bound)"), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP, ntpdig and chronyd (make test runs it)"]
fn real_clients_are_answered_through_af_xdp() {
    let Some(log) = real_clients(&["--cores", "0", "--xdp-answer", "off"]) else {
        return;
    };
    let t = totals(&log);
    // Every request the clients sent went through the XDP redirect to a responder, and each
    // got its reply: 3 from ntpdig, and chronyd's (as many as it chose to send).
    assert_eq!(t.answered, 0, "{log}");
    assert!(t.redirected > 3, "{log}");
    assert_eq!(t.requests, t.redirected, "{log}");
    assert_eq!(t.replies, t.requests, "{log}");
    assert_eq!(t.xdp_stamps, t.replies, "every T2 is the XDP stamp:\n{log}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn t2_is_the_xdp_stamp_between_send_and_t3() {
    for tier in ["on", "off"] {
        t2_between_send_and_t3(tier);
    }
}

/// T2 of replies from the XDP program (`--xdp-answer on`) or an AF_XDP responder (`off`).
fn t2_between_send_and_t3(xdp_answer: &str) {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let server = lab.serve(&["--cores", "1", "--xdp-answer", xdp_answer]);
    const N: u64 = 20;
    let exchanges = lab.run_in("cli", || {
        (0..N)
            .map(|_| {
                query(
                    SocketAddr::new(SERVER_V4.parse().unwrap(), 123),
                    "0.0.0.0:0",
                    Duration::from_secs(2),
                )
            })
            .collect::<Vec<_>>()
    });
    let log = stop(server);
    for exchange in exchanges {
        let (sent, reply) = exchange.expect("a reply");
        assert_valid_reply(&reply);
        let t2 = ntp_to_unix_ns(u64::from_be_bytes(reply[32..40].try_into().unwrap()));
        let t3 = ntp_to_unix_ns(u64::from_be_bytes(reply[40..48].try_into().unwrap()));
        // One clock, one host: T2 is after the send (allow the 2^-32 s truncation) and within
        // 50 ms of it even on a loaded machine; T3 follows T2.
        assert!(t2 >= sent - 1, "T2 {t2} before the send {sent}");
        assert!(
            t2 - sent < 50_000_000,
            "T2 {} ms after the send",
            (t2 - sent) / 1_000_000
        );
        assert!(t3 > t2, "T3 {t3} not after T2 {t2}");
    }
    let t = totals(&log);
    if xdp_answer == "on" {
        assert_eq!((t.answered, t.redirected, t.requests), (N, 0, 0), "{log}");
    } else {
        assert_eq!(
            (t.answered, t.redirected, t.requests, t.replies, t.xdp_stamps),
            (0, N, N, N, N),
            "{log}"
        );
    }
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn ipv6_and_vlan_are_answered_and_other_traffic_passes() {
    for tier in ["on", "off"] {
        ipv6_and_vlan(tier);
    }
}

fn ipv6_and_vlan(xdp_answer: &str) {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let mac = |side: &str, dev: &str| -> [u8; 6] {
        let text = lab.ip(side, &["-br", "link", "show", "dev", dev]);
        let word = text
            .split_whitespace()
            .nth(2)
            .expect("a MAC in `ip -br link`")
            .to_string();
        let bytes: Vec<u8> = word
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    };
    let (cli_mac, srv_mac) = (mac("cli", "cli0"), mac("srv", "srv0"));
    let server = lab.serve(&["--cores", "0", "--xdp-answer", xdp_answer]);

    // Services the kernel answers while the program is attached: UDP on another port, TCP.
    let (udp_echo, tcp) = lab.run_in("srv", || {
        (
            UdpSocket::bind((SERVER_V4, 7777)).unwrap(),
            TcpListener::bind((SERVER_V4, 7778)).unwrap(),
        )
    });
    let echo = std::thread::spawn(move || {
        udp_echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = udp_echo.recv_from(&mut buf).unwrap();
        udp_echo.send_to(&buf[..n], from).unwrap();
    });
    let accept = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = tcp.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
    });

    let ping_ok = lab.run_in("cli", move || {
        let v6 = query(
            SocketAddr::new(SERVER_V6.parse().unwrap(), 123),
            "[::]:0",
            Duration::from_secs(3),
        );
        assert_valid_reply(&v6.expect("an IPv6 reply").1);
        // This kernel has no 8021q module for a VLAN device, so the tagged request is written
        // whole to cli0 with a packet socket, and the reply read back from it.
        let (tci, reply) = vlan_exchange("cli0", cli_mac, srv_mac, 7).expect("a reply to the VLAN 7 request");
        assert_eq!(tci & 0xfff, 7, "the reply goes back on VLAN 7");
        assert_valid_reply(&reply);

        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        udp.send_to(b"hello", (SERVER_V4, 7777)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = udp.recv_from(&mut buf).expect("the UDP echo on port 7777");
        assert_eq!(&buf[..n], b"hello");

        use std::io::{Read, Write};
        let mut conn = TcpStream::connect_timeout(
            &SocketAddr::new(SERVER_V4.parse().unwrap(), 7778),
            Duration::from_secs(3),
        )
        .expect("TCP connect");
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        conn.write_all(b"strat").unwrap();
        let mut back = [0u8; 5];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"strat");
        icmp_echo(SERVER_V4.parse().unwrap())
    });
    echo.join().unwrap();
    accept.join().unwrap();
    assert!(ping_ok, "no ICMP echo reply from {SERVER_V4}");
    let log = stop(server);
    let t = totals(&log);
    if xdp_answer == "on" {
        assert_eq!((t.answered, t.redirected, t.replies), (2, 0, 0), "{log}");
    } else {
        assert_eq!((t.answered, t.redirected, t.replies), (0, 2, 2), "{log}");
    }
    assert!(t.passed > 0, "{log}");
}

/// Sends an NTP request from 198.18.0.1 to 198.18.0.2 tagged with VLAN `vlan` out of `dev`,
/// and returns the VLAN TCI and NTP payload of the reply.
fn vlan_exchange(dev: &str, src_mac: [u8; 6], dst_mac: [u8; 6], vlan: u16) -> Option<(u16, Vec<u8>)> {
    const SPORT: u16 = 40123;
    let (src, dst) = ([198u8, 18, 0, 1], [198u8, 18, 0, 2]);
    let frame = RequestFrame {
        src_mac: EthernetAddress(src_mac),
        dst_mac: EthernetAddress(dst_mac),
        vlan: Vlan::Single(VlanTag::new(EtherType::VLAN, 0, false, vlan)),
        ip: Ip::V4 {
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            options: Vec::new(),
        },
        ident: 0,
        src_port: SPORT,
        dst_port: 123,
        payload: client_request(0x23, 48),
        ..RequestFrame::v4()
    }
    .build();

    let ifindex = {
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a valid NUL-terminated name.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    };
    assert!(ifindex > 0, "{dev} not found");
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
    // SAFETY: an all-zero sockaddr_ll is valid; the fields that matter are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    let one: libc::c_int = 1;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: valid pointers and lengths for each call.
    unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut result = None;
    while result.is_none() && Instant::now() < deadline {
        let mut buf = [0u8; 2048];
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid; its buffers are set below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: `msg` points to live buffers of the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if n <= 0 {
            continue;
        }
        let data = &buf[..n as usize];
        // The kernel took the tag out of the frame into the auxdata, or left it in place.
        let (tci_in_frame, l3) = if data.len() > 18 && data[12..14] == [0x81, 0x00] {
            (Some(u16::from_be_bytes([data[14], data[15]])), 18)
        } else {
            (None, 14)
        };
        if data.len() < l3 + 28 + 48 || data[l3 + 9] != 17 || data[l3 + 12..l3 + 16] != dst {
            continue;
        }
        let udp = &data[l3 + 20..];
        if udp[0..2] != 123u16.to_be_bytes() || udp[2..4] != SPORT.to_be_bytes() {
            continue;
        }
        let mut tci = tci_in_frame;
        // SAFETY: walking the control messages the kernel wrote into `control` through `msg`:
        // CMSG_FIRSTHDR and CMSG_NXTHDR only return headers that lie within msg_controllen
        // bytes of msg_control (or null), the buffer is live and no longer written, and a
        // PACKET_AUXDATA message holds a whole tpacket_auxdata (the kernel writes it so), read
        // unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                    let aux: libc::tpacket_auxdata = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        tci = Some(aux.tp_vlan_tci);
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        result = tci.map(|tci| (tci, udp[8..56].to_vec()));
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    result
}

/// Sends one ICMP echo request with a raw socket and waits for the matching reply.
fn icmp_echo(to: IpAddr) -> bool {
    let IpAddr::V4(to) = to else { return false };
    // SAFETY: socket() has no memory preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let id = (std::process::id() & 0xffff) as u16;
    let mut packet = [
        8u8,
        0,
        0,
        0,
        (id >> 8) as u8,
        id as u8,
        0,
        1,
        b's',
        b't',
        b'r',
        b'a',
    ];
    let sum = !packet.chunks(2).fold(0u32, |acc, w| {
        let acc = acc + u16::from_be_bytes([w[0], w[1]]) as u32;
        (acc & 0xffff) + (acc >> 16)
    }) as u16;
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.octets()),
        },
        sin_zero: [0; 8],
    };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: valid pointers and lengths for each call; `fd` is closed at the end.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = false;
    while Instant::now() < deadline && !got {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 28 {
            let ihl = (buf[0] & 0xf) as usize * 4;
            got = buf[ihl] == 0 && buf[ihl + 4..ihl + 6] == id.to_be_bytes();
        }
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    got
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn each_queue_is_answered_by_its_own_responder() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    // The responders' own counters are the point: every request goes to AF_XDP.
    let server = lab.serve(&["--cores", "0,1", "--xdp-answer", "off"]);
    // veth picks the receive queue from the sender's transmit queue, which follows the
    // socket's flow hash: many sockets spread over both queues.
    const N: usize = 64;
    let answered = lab.run_in("cli", || {
        (0..N)
            .filter(|_| {
                query(
                    SocketAddr::new(SERVER_V4.parse().unwrap(), 123),
                    "0.0.0.0:0",
                    Duration::from_secs(2),
                )
                .is_some()
            })
            .count()
    });
    assert_eq!(answered, N);
    let log = stop(server);
    let mut per_queue = Vec::new();
    for queue in 0..2 {
        let l = log_line(&log, &format!("xdp responder {queue} (core {queue}):"));
        per_queue.push((log_field(l, &format!("(core {queue}):")), log_field(l, "bytes),")));
    }
    for (queue, (requests, replies)) in per_queue.iter().enumerate() {
        assert!(*requests > 0, "queue {queue} got nothing:\n{log}");
        assert_eq!(requests, replies, "queue {queue}:\n{log}");
    }
    assert_eq!(per_queue.iter().map(|q| q.0).sum::<u64>(), N as u64, "{log}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn a_stale_program_is_replaced_and_a_clean_stop_leaves_none() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let server_v4 = SocketAddr::new(SERVER_V4.parse().unwrap(), 123);
    let ask = |lab: &Lab| {
        lab.run_in("cli", move || {
            query(server_v4, "0.0.0.0:0", Duration::from_secs(2))
        })
        .map(|(_, reply)| assert_valid_reply(&reply))
        .is_some()
    };

    // kill -9: the bpf_link dies with the process, so the kernel detaches the program itself.
    let server = lab.serve(&["--cores", "0"]);
    assert!(ask(&lab));
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(server.pid() as i32, libc::SIGKILL) };
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.xdp_attached() {
        assert!(
            Instant::now() < deadline,
            "the program outlived the killed server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A strata program attached the old way (netlink, as `ip link set ... xdp` does) outlives
    // its loader: plant one, and the next start must replace it.
    let object = std::env::temp_dir().join(format!("strata-xdp-{}.o", std::process::id()));
    std::fs::write(&object, strata::sys::fastpath::program::PLAIN).unwrap();
    let planted = lab.exec(
        "srv",
        "ip",
        &[
            "link",
            "set",
            "dev",
            "srv0",
            "xdpdrv",
            "obj",
            object.to_str().unwrap(),
            "sec",
            "xdp",
        ],
    );
    let _ = std::fs::remove_file(&object);
    assert!(
        planted.status.success(),
        "{}",
        String::from_utf8_lossy(&planted.stderr)
    );
    assert!(lab
        .ip("srv", &["link", "show", "dev", "srv0"])
        .contains("name strata_xdp"));
    assert!(!ask(&lab), "the stale program has no socket: nobody answers");

    let server = lab.serve(&["--cores", "0"]);
    assert!(
        server.log().contains("replaced a stale strata XDP program"),
        "{}",
        server.log()
    );
    assert!(ask(&lab), "serving resumes");
    let log = stop(server);
    assert!(!lab.xdp_attached(), "a clean stop leaves no XDP program:\n{log}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn auto_mode_falls_back_to_sockets_when_xdp_cannot_start() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    // A running strata holds srv0's XDP hook (through its bpf_link), so a second one cannot
    // attach there: in mode auto it serves through sockets on srv0's addresses instead.
    let first = lab.serve(&["--cores", "0"]);
    let mut second = Server::start(
        Some(&lab.ns("srv")),
        &[
            "--iface",
            "srv0",
            "--mode",
            "auto",
            "--ntp-port",
            "1123",
            "--local-stratum",
            "1",
            "--cores",
            "1",
        ],
        None,
    );
    second.wait_for_log("listening on");
    let log = second.log();
    assert!(
        log.contains("falling back to the socket path on the addresses of srv0"),
        "{log}"
    );
    assert!(
        log.contains("another running strata serves on this interface"),
        "{log}"
    );
    let (via_socket, via_xdp) = lab.run_in("cli", || {
        (
            query(
                SocketAddr::new(SERVER_V4.parse().unwrap(), 1123),
                "0.0.0.0:0",
                Duration::from_secs(2),
            ),
            query(
                SocketAddr::new(SERVER_V4.parse().unwrap(), 123),
                "0.0.0.0:0",
                Duration::from_secs(2),
            ),
        )
    });
    assert_valid_reply(&via_socket.expect("the fallback answers on port 1123").1);
    assert_valid_reply(&via_xdp.expect("the first server still answers on 123").1);
    let second_log = stop(second);
    assert!(second_log.contains("socket responder"), "{second_log}");
    let t = totals(&stop(first));
    // The first server's one request was plain: its XDP program answered it.
    assert_eq!((t.answered, t.redirected, t.replies), (1, 0, 0));
}

#[test]
#[ignore = "needs root, network namespaces, XDP and python3 (make test runs it)"]
fn symmetric_peers_reach_the_control_thread_through_af_xdp() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    // A, a socket-path strata in the upstream namespace, and B, on the XDP path of the server's
    // upstream-facing link, name each other as symmetric peers. A's mode-1 packets to B's port
    // 123 are redirected to B's AF_XDP responder, which hands them to B's control thread.
    let common = ["--cores", "0", "--metrics", "off", "--control", "off"];
    let a_args = [
        &common[..],
        &[
            "--listen",
            "0.0.0.0:123",
            "--local-stratum",
            "1",
            "--peer",
            "198.18.0.65 minpoll 0 maxpoll 1",
        ],
    ]
    .concat();
    let a = Server::start(Some(&lab.ns("up")), &a_args, None);
    let b_args = [
        &common[..],
        &["--iface", "srv1", "--mode", "xdp", "--local-stratum", "5"],
        &["--peer", "198.18.0.66 minpoll 0 maxpoll 1", "--minsources", "1"],
    ]
    .concat();
    let mut b = Server::start(Some(&lab.ns("srv")), &b_args, None);
    b.wait_for_log(READY);
    // B only learns A's time from A's mode-1 packets, which reach it through AF_XDP: without the
    // hand-off it never synchronizes (checked by disabling it).
    b.wait_for_log("synchronized to 198.18.0.66 stratum 2");
    let mut a = a;
    a.wait_for_log("source 198.18.0.65:123 is reachable");
    let log_b = stop(b);
    let log_a = stop(a);
    // Each handed-off packet is also counted as a symmetric-mode drop of the responder.
    let dropped = log_line(&log_b, "total:");
    let symmetric = dropped
        .split("symmetric_mode ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        symmetric > 0,
        "no mode-1 packet reached B's XDP responders:\n{log_b}\n{log_a}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn requests_with_a_mac_go_to_af_xdp_while_plain_ones_are_answered_in_xdp() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let server = lab.serve(&["--cores", "0"]);
    let replies = lab.run_in("cli", || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let to = SocketAddr::new(SERVER_V4.parse().unwrap(), 123);
        // A plain request, then one with a 20-byte MAC (key ID and MD5 digest) after the header.
        [48, 68].map(|len| {
            sock.send_to(&client_request(0x23, len), to).unwrap();
            let mut buf = [0u8; 512];
            let (n, _) = sock.recv_from(&mut buf).expect("a reply");
            buf[..n].to_vec()
        })
    });
    for reply in &replies {
        assert_valid_reply(reply);
    }
    let log = stop(server);
    let t = totals(&log);
    assert_eq!(
        (t.answered, t.redirected, t.requests, t.replies),
        (1, 1, 1, 1),
        "the plain request answered in XDP, the other by a responder:\n{log}"
    );
}
