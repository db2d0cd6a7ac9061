//! What the load generator measured, as it is written to JSON.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of publish-to-receive latency, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Events timed.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// The percentiles of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let at = |q| histogram.value_at_quantile(q);
        Latency {
            count: histogram.len(),
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: histogram.max(),
        }
    }
}

/// One step of a ramp, or a churn run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Step {
    /// Connections asked for.
    pub connections: usize,
    /// Connections whose response head arrived, in all.
    pub connected: usize,
    /// Connections failed, in all.
    pub failed: usize,
    /// Seconds to open this step's connections.
    pub connect_secs: f64,
    /// Seconds of the window.
    pub window_secs: f64,
    /// Events received in the window.
    pub events: u64,
    /// Events per second received in the window.
    pub events_per_sec: f64,
    /// Events lost in the window (jumps in a topic's `seq`).
    pub lost: u64,
    /// Events out of order or repeated in the window.
    pub reordered: u64,
    /// Publish-to-receive latency of the window's events.
    pub latency: Latency,
    /// Server CPU per event received, microseconds.
    pub server_cpu_us_per_event: Option<f64>,
    /// Server write system calls per event received.
    pub server_syscw_per_event: Option<f64>,
    /// Server RSS before any connection, KiB.
    pub server_rss_base_kib: Option<u64>,
    /// Server RSS at the end of the window, KiB.
    pub server_rss_kib: Option<u64>,
    /// (RSS at the end of the window - RSS before any connection) / connections, KiB.
    pub server_rss_per_conn_kib: Option<f64>,
    /// The load generator's CPU in the window, cores.
    pub client_cpu_cores: f64,
    /// Bytes read from the sockets (HTTP framing included) per event.
    pub wire_bytes_per_event: Option<f64>,
    /// Body bytes (content-coded) per event.
    pub body_bytes_per_event: Option<f64>,
    /// Decoded body bytes (the event stream) per event.
    pub decoded_bytes_per_event: Option<f64>,
    /// Churn: connect + GET + response head + close cycles.
    pub cycles: u64,
    /// Churn: cycles per second.
    pub cycles_per_sec: f64,
    /// Churn: server CPU per cycle, microseconds.
    pub server_cpu_us_per_cycle: Option<f64>,
    /// Churn: server RSS after the settle that follows, KiB.
    pub server_rss_after_kib: Option<u64>,
    /// Churn: subscribers the server counts after that settle (0: all cleaned up).
    pub subscribers_after: Option<u64>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// The URLs.
    pub urls: Vec<String>,
    /// One per step.
    pub steps: Vec<Step>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// With `--until-seq`: connections that received exactly 1..=K in order.
    pub complete: Option<usize>,
}
