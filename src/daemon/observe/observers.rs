//! Starting and stopping the two observer endpoints of `strata serve`: the Prometheus endpoint
//! and the control socket, both reading one [`Observed`].
//!
//! An endpoint that was configured and cannot be opened is an error (the operator asked for
//! it); the default one is only a warning, since another strata on the same machine (a test,
//! a second instance on another interface) may hold the default address or path already.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::control_socket::{self, ControlSocket, Reporter};
use super::exporter::encode_openmetrics;
use super::http::{self, Format, MetricsEndpoint, Render};
use super::report::Observed;
use super::text::openmetrics_to_text;
use crate::daemon::config::Endpoint;

/// The running endpoints.
pub struct Observers {
    metrics: Option<MetricsEndpoint>,
    control: Option<ControlSocket>,
}

impl Observers {
    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsEndpoint::local_addr)
    }

    /// Waits for both threads (after the shutdown flag was set); removes the control socket.
    pub fn join(self) {
        if let Some(m) = self.metrics {
            if m.join().is_err() {
                log::warn!("the metrics thread panicked");
            }
        }
        if let Some(c) = self.control {
            if c.join().is_err() {
                log::warn!("the control socket thread panicked");
            }
        }
    }
}

/// Opens what `metrics` and `control` ask for; `control_owner` gets the control socket (see
/// [`control_socket::Owner`]).
pub fn start(
    observed: Observed,
    metrics: &Endpoint<SocketAddr>,
    control: &Endpoint<PathBuf>,
    control_owner: control_socket::Owner,
    shutdown: Arc<AtomicBool>,
) -> Result<Observers, String> {
    let observed = Arc::new(observed);
    let mut observers = Observers {
        metrics: None,
        control: None,
    };
    if let Some(addr) = metrics.get() {
        let o = observed.clone();
        let render: Arc<Render> = Arc::new(move |format| {
            let om = encode_openmetrics(o.report());
            match format {
                Format::OpenMetrics => om,
                Format::Text => openmetrics_to_text(&om),
            }
        });
        match http::start(*addr, render, shutdown.clone()) {
            Ok(endpoint) => {
                log::info!("metrics on http://{}/metrics", endpoint.local_addr());
                observers.metrics = Some(endpoint);
            }
            Err(e) => {
                let message = format!("cannot serve metrics on {addr}: {e}");
                match metrics {
                    Endpoint::Given(_) => return Err(message),
                    _ => log::warn!("{message} (running without; --metrics ADDR:PORT picks another)"),
                }
            }
        }
    }
    if let Some(path) = control.get() {
        let o = observed.clone();
        let reporter: Arc<Reporter> = Arc::new(move || o.report());
        match control_socket::start(path, reporter, shutdown, control_owner) {
            Ok(socket) => {
                log::info!(
                    "control socket at {} (strata status; mode {:o}, directory {:o})",
                    socket.path().display(),
                    control_socket::SOCKET_MODE,
                    control_socket::DIR_MODE
                );
                observers.control = Some(socket);
            }
            Err(e) => {
                let message = format!("cannot open the control socket: {e}");
                match control {
                    // A metrics thread already started ends with the shutdown the caller sets.
                    Endpoint::Given(_) => return Err(message),
                    _ => log::warn!("{message} (running without; --control PATH picks another)"),
                }
            }
        }
    }
    Ok(observers)
}
