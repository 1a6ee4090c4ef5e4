//! Name resolution off the control thread: `getaddrinfo` can block for seconds, and the control
//! thread must keep polling the sources it has. Each request runs on a short-lived thread and
//! its answer comes back over a channel the control loop drains without waiting.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::thread;

/// An answer: which configured entry, and its addresses (or the error).
pub type Answer = (usize, Result<Vec<SocketAddr>, String>);

pub struct Resolver {
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
}

impl Default for Resolver {
    fn default() -> Self {
        Self::new()
    }
}

impl Resolver {
    pub fn new() -> Resolver {
        let (tx, rx) = channel();
        Resolver { tx, rx }
    }

    /// Starts resolving `endpoint` (`host:port`) for entry `entry`.
    pub fn request(&self, entry: usize, endpoint: String) {
        let tx = self.tx.clone();
        let spawned = thread::Builder::new()
            .name("strata-resolve".into())
            .spawn(move || {
                let answer = endpoint
                    .to_socket_addrs()
                    .map(|addrs| {
                        let mut v: Vec<SocketAddr> = Vec::new();
                        for a in addrs {
                            if !v.contains(&a) {
                                v.push(a);
                            }
                        }
                        v
                    })
                    .map_err(|e| format!("cannot resolve {endpoint}: {e}"));
                let _ = tx.send((entry, answer));
            });
        if let Err(e) = spawned {
            let _ = self
                .tx
                .send((entry, Err(format!("cannot start a resolver thread: {e}"))));
        }
    }

    /// The answers that have come in.
    pub fn answers(&self) -> Vec<Answer> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(a) => out.push(a),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return out,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn literals_resolve_to_themselves() {
        let r = Resolver::new();
        r.request(3, "127.0.0.1:123".into());
        r.request(4, "[::1]:1234".into());
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 2 && Instant::now() < deadline {
            got.extend(r.answers());
            std::thread::sleep(Duration::from_millis(5));
        }
        got.sort_by_key(|a| a.0);
        assert_eq!(got[0], (3, Ok(vec!["127.0.0.1:123".parse().unwrap()])));
        assert_eq!(got[1], (4, Ok(vec!["[::1]:1234".parse().unwrap()])));
    }
}
