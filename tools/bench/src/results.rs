//! Everything a suite run measured: the document written to `results.json`, from which
//! the Markdown tables are made ([`crate::markdown`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::loadgen::Report;

/// The machine and the run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    /// When the run started (UTC).
    pub date: String,
    /// `git rev-parse --short HEAD`.
    pub commit: String,
    /// The command that ran the suite.
    pub command: String,
    /// CPU model and cores.
    pub machine: String,
    /// Open files one process may hold.
    pub open_files: Option<u64>,
    /// Load average (1/5/15 min) before and after.
    pub load_before: String,
    /// See `load_before`.
    pub load_after: String,
}

/// One load generator run against one server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Run {
    /// What ran, for the table: the stack, with its settings.
    pub label: String,
    /// The stack (`tower-sse`, `axum`, ...).
    pub stack: String,
    /// The feed's shape, where the section has several.
    pub shape: Option<String>,
    /// tower-sse's write delay, milliseconds.
    pub delay_ms: Option<u64>,
    /// `identity`, or the content coding asked for.
    pub coding: Option<String>,
    /// What the load generator measured (fan-out: the median of the rounds).
    pub report: Report,
}

/// Idle memory of one server (issue 22).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Idle {
    /// The stack, or the URL of a server the suite did not start.
    pub label: String,
    /// The server's RSS before any stream, KiB.
    pub rss_before_kib: u64,
    /// One per size, rising.
    pub sizes: Vec<IdleSize>,
    /// Heartbeat CPU with the most streams open.
    pub heartbeat: Option<Heartbeat>,
    /// Streams that received the one event then published on their topic (`None`: not
    /// published, a server the suite did not start).
    pub delivered: Option<usize>,
    /// Load generator processes.
    pub processes: usize,
}

/// Idle memory at one size.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IdleSize {
    /// Streams asked for.
    pub streams: usize,
    /// Streams open (response head received).
    pub connected: usize,
    /// Streams refused or failed.
    pub failed: usize,
    /// RSS with them, KiB.
    pub rss_kib: u64,
    /// (RSS with the streams - RSS before) / streams, KiB.
    pub kib_per_stream: f64,
    /// Seconds to open this size's new streams.
    pub connect_secs: f64,
    /// This size's new streams per second.
    pub streams_per_sec: f64,
}

/// The server's CPU over a window of idle streams.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Streams open.
    pub streams: usize,
    /// Seconds of the window.
    pub window_secs: f64,
    /// CPU in the window, % of one core.
    pub cpu_percent: f64,
}

/// Two churn rounds on one server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Churn {
    /// The stack.
    pub stack: String,
    /// Both rounds.
    pub rounds: Vec<Report>,
}

/// A delivery check: every subscriber received events 1..=K in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Check {
    /// The stack, with its settings.
    pub label: String,
    /// Subscribers.
    pub subscribers: usize,
    /// Events published.
    pub events: u64,
    /// Subscribers that received exactly 1..=K, in order.
    pub complete: usize,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// The median burst run of one stack.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Burst {
    /// The stack.
    pub stack: String,
    /// Events per run.
    pub events: u64,
    /// Events per second.
    pub events_per_sec: f64,
    /// MB (10^6) per second.
    pub mb_per_sec: f64,
}

/// One encode figure, from criterion's `--output-format bencher` line.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Encode {
    /// The case (`position-json`, ...).
    pub case: String,
    /// The side (`tower-sse`, `tower-sse/body`, `axum`, `warp`).
    pub bench: String,
    /// Criterion's median, nanoseconds per event.
    pub ns_per_event: f64,
}

/// Everything measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Machine, date, load, command.
    pub meta: Meta,
    /// Delivery checks.
    pub check: Vec<Check>,
    /// Fan-out, every stack at every step.
    pub fanout: Vec<Run>,
    /// Idle memory.
    pub idle: Vec<Idle>,
    /// Churn.
    pub churn: Vec<Churn>,
    /// Two tower-sse instances on one Redis.
    pub redis: Option<Run>,
    /// Why that did not run, if it did not.
    pub redis_skipped: Option<String>,
    /// High rate, every shape, stack and write delay.
    pub high_rate: Vec<Run>,
    /// Compression on the wire.
    pub compression: Vec<Run>,
    /// Burst.
    pub burst: Vec<Burst>,
    /// Encode.
    pub encode: Vec<Encode>,
}
