//! Turns the command line into ready transports, one per worker: UDP sockets, or AF_XDP sockets
//! with the reply-steering program attached to the interface.

use std::io;
use std::net::SocketAddr;

use strata::proto::wire::ethernet::EthernetAddress;
use strata::sys::fastpath::iface::Interface;

use crate::cli::{parse_mac, Args};
use crate::transport::socket::SocketTransport;
use crate::transport::xdp::{XdpOptions, XdpTransport};
use crate::transport::xdp_prog::ReplySteering;
use crate::transport::Transport;

/// A worker's transport, whichever kind.
pub type BoxedTransport = Box<dyn Transport + Send>;

/// The transports of a run and what must live as long as they do.
pub struct Transports {
    pub transports: Vec<BoxedTransport>,
    /// The XDP program of AF_XDP mode; dropping it detaches it.
    pub steering: Option<ReplySteering>,
    /// What the operator should know (copy mode, for instance).
    pub notes: Vec<String>,
}

pub fn open(args: &Args) -> Result<Transports, String> {
    if args.xdp() {
        open_xdp(args)
    } else {
        let transports = (0..args.threads)
            .map(|_| {
                SocketTransport::open(args.target, args.flows() as usize, args.batch as usize)
                    .map(|t| Box::new(t) as BoxedTransport)
                    .map_err(|e| format!("cannot open UDP sockets: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Transports {
            transports,
            steering: None,
            notes: Vec::new(),
        })
    }
}

/// The interface's own MAC address, from sysfs.
pub fn interface_mac(name: &str) -> io::Result<EthernetAddress> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    parse_mac(text.trim()).map_err(io::Error::other)
}

fn open_xdp(args: &Args) -> Result<Transports, String> {
    let name = args.iface.clone().expect("xdp mode has --iface");
    let SocketAddr::V4(target) = args.target else {
        return Err("AF_XDP mode sends IPv4 only: give an IPv4 --target".into());
    };
    let iface = Interface::lookup(&name).map_err(|e| format!("--iface {name}: {e}"))?;
    // One thread sends on queue 0 and drains every queue (replies land on whichever queue the
    // far end transmitted on). Several threads would need requests steered per thread, which
    // only a single-queue-per-thread setup gives; one thread is what a pinned benchmark runs.
    if args.threads != 1 {
        return Err(format!(
            "AF_XDP mode runs one thread (it sends on queue 0 and receives on all {} queues of {name}); \
             --threads is {}",
            iface.rx_queues, args.threads
        ));
    }
    if iface.rx_queues > crate::transport::xdp_prog::MAX_QUEUES {
        return Err(format!(
            "{name} has {} receive queues; AF_XDP mode handles at most {}",
            iface.rx_queues,
            crate::transport::xdp_prog::MAX_QUEUES
        ));
    }
    let flows = args.flows();
    if flows > args.src_net.hosts() {
        return Err(format!("--flows {flows} needs more addresses than --src-net has"));
    }
    let src_mac = match args.src_mac {
        Some(mac) => mac,
        None => interface_mac(&name).map_err(|e| format!("cannot read the MAC address of {name}: {e}"))?,
    };
    let mut steering = ReplySteering::load(target).map_err(|e| format!("{name}: {e}"))?;
    let transport = XdpTransport::open(XdpOptions {
        iface: name.clone(),
        queue: 0,
        src_mac,
        dst_mac: args.dst_mac.expect("clap requires --dst-mac with --iface"),
        target,
        src_net: args.src_net,
        first_flow: 0,
        flows,
        batch: args.batch as usize,
        rx_queues: iface.rx_queues,
    })
    .map_err(|e| format!("{name}: {e}"))?;
    steering
        .register(0, transport.fd())
        .map_err(|e| format!("{name}: {e}"))?;
    for other in transport.others() {
        steering
            .register(other.queue, other.fd())
            .map_err(|e| format!("{name} queue {}: {e}", other.queue))?;
    }
    steering.attach(iface.index).map_err(|e| format!("{name}: {e}"))?;
    let mut notes = Vec::new();
    if !transport.zero_copy() {
        notes.push(format!(
            "{name}: AF_XDP in copy mode (the driver has no zero-copy)"
        ));
    }
    Ok(Transports {
        transports: vec![Box::new(transport)],
        steering: Some(steering),
        notes,
    })
}
