//! The JSON documents: what the load generator measured ([`Report`]) and everything a
//! suite run measured ([`Results`], `results.json`, from which [`crate::markdown`]
//! makes the tables).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Publish-to-receive latency, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One step of a ramp (server figures per delivered event, from `/proc`), or a churn
/// run (`cycles`: connect, GET, response head, close; RSS and subscribers `after` the
/// settle that follows).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Step {
    pub connections: usize,
    pub connected: usize,
    pub failed: usize,
    pub window_secs: f64,
    pub events: u64,
    pub events_per_sec: f64,
    /// Jumps in a topic's `seq`.
    pub lost: u64,
    pub reordered: u64,
    pub latency: Latency,
    pub server_cpu_us_per_event: Option<f64>,
    /// `syscw` of `/proc/PID/io`: `write` and `writev` calls.
    pub server_syscw_per_event: Option<f64>,
    pub server_rss_base_kib: Option<u64>,
    pub server_rss_kib: Option<u64>,
    /// (RSS at the end of the window - RSS before any connection) / connections.
    pub server_rss_per_conn_kib: Option<f64>,
    /// Bytes read from the sockets, HTTP framing included.
    pub wire_bytes_per_event: Option<f64>,
    pub cycles_per_sec: f64,
    pub server_cpu_us_per_cycle: Option<f64>,
    pub server_rss_after_kib: Option<u64>,
    pub subscribers_after: Option<u64>,
}

/// A load generator run: one step per ramp step, and its errors by kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub steps: Vec<Step>,
    pub errors: BTreeMap<String, u64>,
}

/// One load generator run against one server: the stack, and the settings that tell it
/// from the section's other runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    pub label: String,
    pub stack: String,
    pub shape: Option<String>,
    pub delay_ms: Option<u64>,
    pub report: Report,
}

/// Idle memory of one server (issue 22): RSS per stream at each size; the server's CPU
/// over a window with the most streams open; the streams that received the one event
/// then published on their topic (`None`: not published, a server the suite did not
/// start); the load generator processes that held them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Idle {
    pub label: String,
    pub rss_before_kib: u64,
    pub sizes: Vec<IdleSize>,
    pub cpu_window_secs: f64,
    pub cpu_percent: f64,
    pub delivered: Option<usize>,
    pub processes: usize,
}

/// Idle memory at one size: (RSS with the streams - RSS before) / streams open, and how
/// fast this size's new streams were opened.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IdleSize {
    pub streams: usize,
    pub connected: usize,
    pub failed: usize,
    pub rss_kib: u64,
    pub kib_per_stream: f64,
    pub connect_secs: f64,
    pub streams_per_sec: f64,
}

/// The machine and the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub date: String,
    pub commit: String,
    pub command: String,
    pub machine: String,
    pub open_files: Option<u64>,
    pub load_before: String,
    pub load_after: String,
}

/// Everything measured. `burst`: stack, events per second (criterion's median);
/// `encode`: case, side, criterion's median in nanoseconds per event.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub fanout: Vec<Run>,
    pub idle: Vec<Idle>,
    pub churn: Vec<Run>,
    pub redis: Vec<Run>,
    pub high_rate: Vec<Run>,
    pub compression: Vec<Run>,
    pub burst: Vec<(String, f64)>,
    pub encode: Vec<(String, String, f64)>,
}
