//! What reads the counters and the state: `/metrics` and `strata status`.
//!
//! - [`board`]: what the control thread publishes about itself and its upstream sources;
//! - [`report`]: everything read into one serializable picture;
//! - [`exporter`], [`text`], [`http`]: that picture as Prometheus metrics on `GET /metrics`;
//! - [`control_socket`], [`status_view`]: the same picture for `strata status` over a Unix socket;
//! - [`health`]: `strata status --check`, one verdict with documented exit codes;
//! - [`observers`]: starting both endpoints for `strata serve`;
//! - [`clients`]: the most active clients, from the tiers' sampled requests, for `strata clients`.

pub mod board;
pub mod clients;
pub mod clients_view;
pub mod control_socket;
pub mod exporter;
pub mod health;
pub mod http;
pub mod leap_status;
pub mod observers;
pub mod report;
pub mod rtc_status;
pub mod status_view;
pub mod text;
