//! Mode-6 queries (`ntpq -c rv`, `ntpq -p`, `check_ntp_peer`) answered by the control thread
//! from its engine as it is at the query: the pure encoding is `proto::mode6`, the sockets
//! `sys::socket::reply`. Queries come from the responders' hand-off (which keeps all but
//! loopback and the `monitor` prefixes out) or, on the XDP path, from the control thread's own
//! sockets on the NTP port (checked here against the same list).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::proto::admission::acl::Prefix;
use crate::proto::control::engine::{Engine, SyncState};
use crate::proto::control::source::Association;
use crate::proto::mode6::{self, PeerView, Selection, SystemView, View, MAX_REPLY};
use crate::proto::respond::{self, Admission};
use crate::proto::wire::ntp::HEADER_LEN;
use crate::sys::handoff::monitors_allow;
use crate::sys::socket::reply::{reply_socket_for, ReplySocket};

/// The sockets replies leave from, given to the control thread once the path runs.
pub(crate) type ReplySockets = Arc<Mutex<Vec<ReplySocket>>>;

pub(super) struct Queries {
    sockets: ReplySockets,
    monitor: Vec<Prefix>,
    /// Answered, and dropped (not a query strata reads, or no socket to answer from).
    pub answered: u64,
    pub dropped: u64,
}

impl Queries {
    pub fn new(sockets: ReplySockets, monitor: Vec<Prefix>) -> Queries {
        Queries {
            sockets,
            monitor,
            answered: 0,
            dropped: 0,
        }
    }

    /// Answers one query from `from` (already admitted by the hand-off, or checked here).
    pub fn answer(&mut self, engine: &Engine, now: i64, from: SocketAddr, query: &[u8]) {
        let mut reply = [0u8; MAX_REPLY];
        let Some(len) = mode6::answer(query, &view(engine, now), &mut reply) else {
            self.dropped += 1;
            log::debug!("mode 6 from {from}: not a query strata reads, dropped");
            return;
        };
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let sent = match reply_socket_for(&sockets, from) {
            Some(socket) => socket.send_unstamped(&reply[..len], from),
            None => Err(std::io::Error::other("no socket of the server port reaches it")),
        };
        match sent {
            Ok(()) => self.answered += 1,
            Err(e) => {
                self.dropped += 1;
                log::debug!("mode 6 reply to {from}: {e}");
            }
        }
    }

    /// Reads what reached the control thread's own sockets (the XDP path's: what the kernel
    /// delivers to the NTP port, which is loopback's traffic) and answers the mode-6 queries
    /// from monitoring addresses among it, and loopback's time requests (`check_ntp_time -H
    /// localhost`) with `respond()` as the responders would; the rest is dropped and counted.
    pub fn receive(&mut self, engine: &Engine, now: i64) {
        let mut buf = [0u8; 1024];
        let mut queries = Vec::new();
        {
            let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
            for socket in sockets.iter() {
                // Bounded: what arrives while this runs waits for the next round.
                for _ in 0..64 {
                    let Some((n, from)) = socket.try_recv(&mut buf) else {
                        break;
                    };
                    let received = crate::sys::clock::read::read_clock_ns(libc::CLOCK_REALTIME);
                    let mode6 = buf.first().is_some_and(|b| b & 7 == 6);
                    if mode6 && monitors_allow(&self.monitor, from) {
                        queries.push((from, buf[..n].to_vec()));
                    } else if from.ip().is_loopback() && answer_time(engine, &mut buf[..n], received) {
                        match socket.send_unstamped(&buf[..HEADER_LEN], from) {
                            Ok(()) => self.answered += 1,
                            Err(_) => self.dropped += 1,
                        }
                    } else {
                        self.dropped += 1;
                    }
                }
            }
        }
        for (from, query) in queries {
            self.answer(engine, now, from, &query);
        }
    }
}

/// Answers a time request in place (a 48-byte reply) with the published state, received at
/// CLOCK_REALTIME `received`; false when `respond()` drops it.
fn answer_time(engine: &Engine, packet: &mut [u8], received: i64) -> bool {
    let published = engine.published();
    let rx = published.clock.ntp_from_realtime(received);
    let now = crate::sys::clock::read::read_clock_ns(libc::CLOCK_REALTIME);
    let tx = published.clock.ntp_from_realtime(now);
    match respond::respond(packet, rx, tx, Admission::Serve, &published.server) {
        Ok(reply) => reply.len == HEADER_LEN,
        Err(_) => false,
    }
}

/// The engine as mode 6 shows it; association IDs are source slots plus one.
fn view(engine: &Engine, now: i64) -> View {
    let published = engine.published();
    let server = published.server;
    let system_peer = match engine.sync_state() {
        SyncState::Synchronized { system_peer } => Some(system_peer),
        _ => None,
    };
    let sources = engine.sources(now);
    let peer_output = system_peer
        .and_then(|id| engine.source(id))
        .and_then(|s| s.last_output());
    let system = SystemView {
        leap: server.leap as u8,
        stratum: server.stratum,
        precision: server.precision,
        root_delay: server.root_delay.to_seconds_f64(),
        root_dispersion: server.root_dispersion.to_seconds_f64(),
        reference_id: server.reference_id,
        reference_time: server.reference_time,
        clock: engine.served_time(now),
        system_peer: system_peer.map_or(0, |id| id.0 as u16 + 1),
        local: engine.sync_state() == SyncState::Local,
        poll: system_peer
            .and_then(|id| engine.source(id))
            .map_or(0, |s| s.poll()),
        offset: system_peer
            .and_then(|id| sources.iter().find(|s| s.id == id))
            .and_then(|s| s.offset)
            .unwrap_or(0.0),
        frequency_ppm: engine.frequency() * 1e6,
        jitter: peer_output.map_or(0.0, |o| o.jitter),
        version: concat!("strata ", env!("CARGO_PKG_VERSION")),
    };
    let peers = sources
        .iter()
        .map(|status| {
            let source = engine.source(status.id);
            let upstream = source.and_then(|s| s.upstream());
            let output = source.and_then(|s| s.last_output());
            let selection = if Some(status.id) == system_peer {
                Selection::SystemPeer
            } else if status.falseticker {
                Selection::Falseticker
            } else if status.survivor {
                Selection::Candidate
            } else if status.reach != 0 && status.unfit.is_none() {
                Selection::Outlier
            } else {
                Selection::Rejected
            };
            PeerView {
                association: status.id.0 as u16 + 1,
                address: status.addr.ip(),
                port: status.addr.port(),
                host_mode: match status.association {
                    Association::Client | Association::Refclock => 3,
                    Association::Symmetric => 1,
                },
                reach: status.reach,
                selection,
                poll: status.poll,
                peer_poll: status.poll,
                leap: upstream.map_or(3, |u| u.leap as u8),
                stratum: upstream.map_or(16, |u| u.stratum),
                precision: upstream.map_or(0, |u| u.precision),
                root_delay: upstream.map_or(0.0, |u| u.root_delay.to_seconds_f64()),
                root_dispersion: upstream.map_or(0.0, |u| u.root_dispersion.to_seconds_f64()),
                reference_id: upstream.map_or([0; 4], |u| u.reference_id),
                received: source
                    .and_then(|s| s.estimate())
                    .map_or(crate::proto::wire::NtpTimestamp::ZERO, |e| {
                        engine.served_time(e.time)
                    }),
                offset: status.offset,
                delay: output.map(|o| o.sample.delay),
                dispersion: output.map(|o| o.dispersion),
                jitter: output.map(|o| o.jitter),
            }
        })
        .collect();
    View { system, peers }
}
