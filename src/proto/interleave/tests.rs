use super::*;
use crate::proto::respond::{respond, Admission};
use crate::proto::state::test_fixtures::synced;
use crate::proto::wire::ntp::{Leap, Mode};
use proptest::prelude::*;

const SECRET: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
const MS: i64 = 1_000_000;

fn at(ns: i64) -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(1_750_000_000_000_000_000 + ns as i128)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A client in chrony's interleaved mode: its request carries our previous receive stamp as
/// origin and its own receive time of our previous reply as receive.
#[derive(Default)]
struct Client {
    /// Our receive stamp in the last reply (what the next origin is).
    remote_rx: NtpTimestamp,
    /// Its receive time of the last reply.
    local_rx: NtpTimestamp,
    /// Its transmit time of the last request.
    local_tx: NtpTimestamp,
}

impl Client {
    fn request(&mut self, t1: NtpTimestamp) -> [u8; 48] {
        let mut buf = [0u8; 48];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_leap_version_mode(Leap::NoWarning, 4, Mode::Client);
        p.set_origin_timestamp(self.remote_rx);
        p.set_receive_timestamp(self.local_rx);
        p.set_transmit_timestamp(t1);
        self.local_tx = t1;
        buf
    }

    /// Takes a reply received at `t4`; says whether it answered in interleaved mode (its origin
    /// is our previous receive time), in basic mode (our transmit time), or neither.
    fn receive(&mut self, reply: &[u8], t4: NtpTimestamp) -> Option<bool> {
        let p = Packet::new_unchecked(reply);
        let mode = if p.origin_timestamp() == self.local_tx {
            false
        } else if self.local_rx != NtpTimestamp::ZERO && p.origin_timestamp() == self.local_rx {
            true
        } else {
            return None;
        };
        self.remote_rx = p.receive_timestamp();
        self.local_rx = t4;
        Some(mode)
    }
}

/// The server: respond(), then the interleave step, then the remembered exchange with its
/// transmit time read before sending, then (if `kernel_delay`) the kernel's stamp of it.
struct Server {
    table: XleaveTable,
}

impl Server {
    fn new(log2: u8) -> Server {
        Server {
            table: XleaveTable::new(log2, SECRET),
        }
    }

    fn serve(
        &mut self,
        from: SocketAddr,
        request: &mut [u8],
        t2: NtpTimestamp,
        t3: NtpTimestamp,
        kernel: Option<NtpTimestamp>,
    ) -> (usize, Finished) {
        let candidate = candidate(request);
        let reply = respond(request, t2, t3, Admission::Serve, &synced()).expect("answered");
        let finished = self.table.finish(from.ip(), candidate, &mut request[..reply.len]);
        if let Some(rx) = finished.remember {
            self.table.save(from.ip(), rx, mark_transmit(t3));
            if let Some(k) = kernel {
                assert!(self.table.update_transmit(from.ip(), rx, k));
            }
        }
        (reply.len, finished)
    }
}

#[test]
fn the_third_reply_is_interleaved_and_carries_the_real_transmit_of_the_previous_one() {
    let mut server = Server::new(4);
    let mut client = Client::default();
    let from = addr("198.19.0.7:40000");
    let mut kernel_stamps = Vec::new();
    let mut modes = Vec::new();
    for i in 0..5 {
        let t1 = at(i * 1000 * MS);
        let t2 = at(i * 1000 * MS + MS);
        let t3 = at(i * 1000 * MS + MS + 20_000);
        // The packet really left 7 µs after T3 was read.
        let real = at(i * 1000 * MS + MS + 27_000);
        kernel_stamps.push(real);
        let mut buf = client.request(t1);
        let (len, finished) = server.serve(from, &mut buf, t2, t3, Some(real));
        assert_eq!(len, 48);
        let mode = client
            .receive(&buf, at(i * 1000 * MS + 2 * MS))
            .expect("a valid reply");
        assert_eq!(mode, finished.interleaved);
        modes.push(mode);
        let p = Packet::new_unchecked(&buf[..]);
        assert_eq!(p.receive_timestamp().0 & 1, 1, "receive stamps are marked");
        assert_eq!(p.transmit_timestamp().0 & 1, 0, "transmit stamps are marked");
        if mode {
            // Transmit = the kernel's stamp of the previous reply, receive = this request's T2.
            assert_eq!(
                p.transmit_timestamp(),
                mark_transmit(kernel_stamps[i as usize - 1])
            );
            assert_eq!(p.receive_timestamp(), NtpTimestamp(t2.0 | 1));
        }
    }
    assert_eq!(modes, [false, false, true, true, true]);
}

#[test]
fn a_basic_client_is_never_a_candidate() {
    // Origin = our (marked) transmit stamp, or zero: low bit clear.
    let mut buf = [0u8; 48];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_leap_version_mode(Leap::NoWarning, 4, Mode::Client);
    p.set_origin_timestamp(mark_transmit(at(5)));
    p.set_transmit_timestamp(at(9));
    assert_eq!(candidate(&buf), None);
    // Receive equal to transmit: chrony's basic client, also not.
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_origin_timestamp(NtpTimestamp(at(5).0 | 1));
    p.set_receive_timestamp(at(9));
    assert_eq!(candidate(&buf), None);
    // NTPv3: not.
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_receive_timestamp(at(8));
    p.set_leap_version_mode(Leap::NoWarning, 3, Mode::Client);
    assert_eq!(candidate(&buf), None);
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_leap_version_mode(Leap::NoWarning, 4, Mode::Client);
    assert!(candidate(&buf).is_some());
    assert_eq!(candidate(&buf[..47]), None);
}

/// Two exchanges of `a`, then the request `b` makes with `a`'s state: what mode `b` gets.
fn third_request_from(a: SocketAddr, b: SocketAddr) -> bool {
    let mut server = Server::new(4);
    let mut client = Client::default();
    for i in 0..2 {
        let mut buf = client.request(at(i * 1000 * MS));
        server.serve(
            a,
            &mut buf,
            at(i * 1000 * MS + MS),
            at(i * 1000 * MS + 2 * MS),
            None,
        );
        client.receive(&buf, at(i * 1000 * MS + 3 * MS)).unwrap();
    }
    let mut buf = client.request(at(2000 * MS));
    server
        .serve(b, &mut buf, at(2001 * MS), at(2002 * MS), None)
        .1
        .interleaved
}

#[test]
fn state_never_leaks_between_addresses() {
    let a = addr("198.19.0.7:40000");
    assert!(
        third_request_from(a, a),
        "the control: the same client is interleaved"
    );
    // Another address, the same port, the same origin: basic.
    assert!(!third_request_from(a, addr("198.19.0.8:40000")));
    assert!(!third_request_from(
        addr("[2001:db8::7]:123"),
        addr("[2001:db8::8]:123")
    ));
    // IPv6 and the IPv4-mapped form of the same address are the same client.
    assert!(third_request_from(a, addr("[::ffff:198.19.0.7]:40000")));
}

#[test]
fn two_clients_behind_one_address_each_get_their_own_transmit_stamps() {
    let mut server = Server::new(4);
    let mut clients = [Client::default(), Client::default()];
    let ports = [40000, 40001];
    let mut last_kernel = [NtpTimestamp::ZERO; 2];
    let mut modes = [Vec::new(), Vec::new()];
    for i in 0..5i64 {
        for (c, client) in clients.iter_mut().enumerate() {
            let base = i * 1000 * MS + c as i64 * 100 * MS;
            let from = SocketAddr::new("198.19.0.7".parse().unwrap(), ports[c]);
            let kernel = at(base + MS + 30_000 + c as i64 * 1000);
            let mut buf = client.request(at(base));
            let (_, f) = server.serve(
                from,
                &mut buf,
                at(base + MS),
                at(base + MS + 20_000),
                Some(kernel),
            );
            let mode = client.receive(&buf, at(base + 2 * MS)).unwrap();
            assert_eq!(mode, f.interleaved);
            if mode {
                let p = Packet::new_unchecked(&buf[..]);
                assert_eq!(
                    p.transmit_timestamp(),
                    mark_transmit(last_kernel[c]),
                    "client {c}"
                );
            }
            last_kernel[c] = kernel;
            modes[c].push(mode);
        }
    }
    assert_eq!(modes[0], [false, false, true, true, true]);
    assert_eq!(modes[1], [false, false, true, true, true]);
}

#[test]
fn a_client_that_changes_port_stays_interleaved() {
    let mut server = Server::new(4);
    let mut client = Client::default();
    let mut mode = Vec::new();
    for i in 0..6 {
        let from = SocketAddr::new("198.19.0.7".parse().unwrap(), 40000 + i as u16);
        let mut buf = client.request(at(i * 1000 * MS));
        let (_, f) = server.serve(
            from,
            &mut buf,
            at(i * 1000 * MS + MS),
            at(i * 1000 * MS + 2 * MS),
            None,
        );
        client.receive(&buf, at(i * 1000 * MS + 3 * MS)).unwrap();
        mode.push(f.interleaved);
    }
    // chronyd sends every request from a new port: the address and the origin are the client.
    assert_eq!(mode, [false, false, true, true, true, true]);
}

#[test]
fn a_spoofed_or_replayed_origin_gets_a_basic_reply() {
    let mut server = Server::new(4);
    let mut client = Client::default();
    let from = addr("198.19.0.7:40000");
    for i in 0..2 {
        let mut buf = client.request(at(i * 1000 * MS));
        server.serve(
            from,
            &mut buf,
            at(i * 1000 * MS + MS),
            at(i * 1000 * MS + 2 * MS),
            None,
        );
        client.receive(&buf, at(i * 1000 * MS + 3 * MS)).unwrap();
    }
    // A guessed origin, low bit set, from another port of the same address: basic, and the
    // client's state is untouched.
    let mut forged = Client {
        remote_rx: NtpTimestamp(client.remote_rx.0 ^ 0x100),
        local_rx: at(77),
        ..Client::default()
    };
    let mut buf = forged.request(at(1999 * MS));
    let other_port = addr("198.19.0.7:40001");
    assert!(
        !server
            .serve(other_port, &mut buf, at(2000 * MS), at(2001 * MS), None)
            .1
            .interleaved
    );
    // The client's real origin from another address (a spoofer that saw it): basic too.
    let mut stolen = Client {
        remote_rx: client.remote_rx,
        local_rx: at(78),
        ..Client::default()
    };
    let mut buf = stolen.request(at(1999 * MS + 1));
    let other_host = addr("198.19.0.9:40000");
    assert!(
        !server
            .serve(other_host, &mut buf, at(2000 * MS + 1), at(2001 * MS + 1), None)
            .1
            .interleaved
    );
    // The real request, then the same request again (a replay): only the first is interleaved.
    let request = client.request(at(2002 * MS));
    let mut buf = request;
    assert!(
        server
            .serve(from, &mut buf, at(2003 * MS), at(2004 * MS), None)
            .1
            .interleaved
    );
    let mut again = request;
    assert!(
        !server
            .serve(from, &mut again, at(2005 * MS), at(2006 * MS), None)
            .1
            .interleaved
    );
    // The replay was answered in basic mode, and the client goes on from the reply it got.
    client.receive(&buf, at(2004 * MS)).unwrap();
    let mut buf = client.request(at(3002 * MS));
    assert!(
        server
            .serve(from, &mut buf, at(3003 * MS), at(3004 * MS), None)
            .1
            .interleaved
    );
}

#[test]
fn a_flood_of_new_clients_makes_the_table_forget_and_answers_stay_basic() {
    let mut server = Server::new(3);
    let capacity = server.table.capacity();
    let mut client = Client::default();
    let from = addr("198.19.0.7:40000");
    for i in 0..2 {
        let mut buf = client.request(at(i * 1000 * MS));
        server.serve(
            from,
            &mut buf,
            at(i * 1000 * MS + MS),
            at(i * 1000 * MS + 2 * MS),
            None,
        );
        client.receive(&buf, at(i * 1000 * MS + 3 * MS)).unwrap();
    }
    // Many interleaving clients, newer than ours: every one is answered, in basic mode (each is
    // new), and the table keeps its size.
    let mut flooders = 0;
    for n in 0..(capacity as u32 * 64) {
        let ip = std::net::Ipv4Addr::from(0xc613_0000 + n);
        let src = SocketAddr::new(ip.into(), 1024 + (n % 50_000) as u16);
        let mut f = Client {
            remote_rx: NtpTimestamp(u64::from(n) << 8 | 1),
            local_rx: at(1),
            ..Client::default()
        };
        let mut buf = f.request(at(1500 * MS + i64::from(n)));
        let (len, finished) = server.serve(
            src,
            &mut buf,
            at(1600 * MS + i64::from(n)),
            at(1601 * MS + i64::from(n)),
            None,
        );
        assert_eq!(len, 48);
        assert!(!finished.interleaved);
        flooders += 1;
    }
    assert_eq!(server.table.capacity(), capacity);
    assert_eq!(flooders, capacity * 64);
    // Our client was forgotten: basic once, then interleaved again.
    let mut buf = client.request(at(2000 * MS));
    assert!(
        !server
            .serve(from, &mut buf, at(2001 * MS), at(2002 * MS), None)
            .1
            .interleaved
    );
    client.receive(&buf, at(2003 * MS)).unwrap();
    let mut buf = client.request(at(3000 * MS));
    assert!(
        server
            .serve(from, &mut buf, at(3001 * MS), at(3002 * MS), None)
            .1
            .interleaved
    );
}

#[test]
fn a_transmit_stamp_is_taken_only_for_its_exchange_and_when_plausible() {
    let table = XleaveTable::new(4, SECRET);
    let from: IpAddr = "198.19.0.7".parse().unwrap();
    let rx = NtpTimestamp(at(0).0 | 1);
    let t3 = at(MS);
    table.save(from, rx, t3);
    assert!(!table.update_transmit("198.19.0.8".parse().unwrap(), rx, at(MS + 5000)));
    assert!(!table.update_transmit(from, NtpTimestamp(rx.0 + 2), at(MS + 5000)));
    assert!(
        !table.update_transmit(from, rx, at(MS - 5000)),
        "earlier than T3 was read"
    );
    assert!(
        !table.update_transmit(from, rx, at(MS + 2000 * MS)),
        "over a second later"
    );
    assert!(table.update_transmit(from, rx, at(MS + 5000)));
    assert_eq!(table.take(from, rx), Some(at(MS + 5000)));
    // Used up: neither taken again nor updated.
    assert_eq!(table.take(from, rx), None);
    assert!(!table.update_transmit(from, rx, at(MS + 6000)));
}

fn arbitrary_request() -> impl Strategy<Value = (Vec<u8>, u64, u64)> {
    (48usize..=120, any::<u64>(), any::<u64>()).prop_flat_map(|(len, origin, receive)| {
        (
            proptest::collection::vec(any::<u8>(), len),
            Just(origin),
            Just(receive),
        )
    })
}

proptest! {
    /// Whatever a request holds, the reply is never longer than it, and it is interleaved only
    /// when its origin is the remembered receive stamp of the same client.
    #[test]
    fn replies_are_never_longer_and_interleave_only_on_a_match(
        (mut bytes, origin, receive) in arbitrary_request(),
        host in 1u8..4,
        remembered in any::<u64>(),
        version in 1u8..=4,
    ) {
        let table = XleaveTable::new(2, SECRET);
        let known: IpAddr = "198.19.0.1".parse().unwrap();
        let remembered = NtpTimestamp(remembered | 1);
        table.save(known, remembered, at(5));
        {
            let mut p = Packet::new_unchecked(&mut bytes[..]);
            p.set_leap_version_mode(Leap::NoWarning, version, Mode::Client);
            p.set_origin_timestamp(NtpTimestamp(origin));
            p.set_receive_timestamp(NtpTimestamp(receive));
        }
        let request_len = bytes.len();
        let from = IpAddr::from([198, 19, 0, host]);
        let candidate = candidate(&bytes);
        let Ok(reply) = respond(&mut bytes, at(10), at(11), Admission::Serve, &synced()) else {
            return Ok(());
        };
        let f = table.finish(from, candidate, &mut bytes[..reply.len]);
        prop_assert!(reply.len <= request_len);
        let matched = host == 1 && version == 4 && origin | 1 == origin
            && NtpTimestamp(origin) == remembered
            && candidate.is_some();
        prop_assert_eq!(f.interleaved, matched);
        if f.interleaved {
            let p = Packet::new_unchecked(&bytes[..reply.len]);
            prop_assert_eq!(p.origin_timestamp(), NtpTimestamp(receive));
            prop_assert_eq!(p.transmit_timestamp(), mark_transmit(at(5)));
        }
    }
}

/// Threads saving, updating and taking exchanges in the same small table at once (as the
/// responder threads do): a take returns nothing or exactly the transmit time saved (or
/// updated) for that address and receive stamp, never a torn or another exchange's one.
#[test]
fn concurrent_threads_never_see_another_exchange() {
    let table = std::sync::Arc::new(XleaveTable::new(1, SECRET));
    // The transmit time an exchange is saved with, and the one its update brings.
    fn saved(host: u8, n: u64) -> NtpTimestamp {
        NtpTimestamp((u64::from(host) << 40 | n << 8) & !1)
    }
    fn updated(host: u8, n: u64) -> NtpTimestamp {
        NtpTimestamp(saved(host, n).0 + 4096)
    }
    let threads: Vec<_> = (1..=4u8)
        .map(|host| {
            let table = table.clone();
            std::thread::spawn(move || {
                let ip = IpAddr::from([198, 19, 0, host]);
                let mut taken = 0;
                for n in 1..20_000u64 {
                    let rx = NtpTimestamp(u64::from(host) << 48 | n << 1 | 1);
                    table.save(ip, rx, saved(host, n));
                    table.update_transmit(ip, rx, updated(host, n));
                    // Someone else's receive stamp from this address: never theirs.
                    let other = NtpTimestamp(u64::from(host % 4 + 1) << 48 | n << 1 | 1);
                    if host % 4 + 1 != host {
                        assert_eq!(table.take(ip, other), None);
                    }
                    if let Some(tx) = table.take(ip, rx) {
                        assert!(tx == saved(host, n) || tx == updated(host, n), "{tx:?}");
                        taken += 1;
                    }
                }
                taken
            })
        })
        .collect();
    let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    // Four slots for four threads: most exchanges are still there when taken.
    assert!(taken > 0);
}

proptest! {
    /// Whatever the error queue hands back, reading it never panics.
    #[test]
    fn any_looped_back_bytes_are_read_safely(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = sent_reply(&bytes);
    }
}
