//! What the gateway tells its operators: the log ([`logs`]), one log line per HTTP request with a
//! request id that follows the work the request causes ([`requests`]), and Prometheus metrics
//! ([`metrics`]).
//!
//! The rest of the gateway only calls the recording functions of [`metrics`] (one per fact, so
//! metric names and labels are spelled in one place) and never talks to the exporter.

pub mod logs;
pub mod metrics;
pub mod requests;

pub use logs::init;
