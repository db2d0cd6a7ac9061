//! tower-sse's benchmark tools, each a binary of this crate:
//!
//! - `loadgen`: a Server-Sent Events load generator usable against any URL ([`loadgen`]);
//! - `fanout-server`: one topic or many, events published at a fixed rate, served by
//!   tower-sse, axum, warp or one of two floors ([`server`]);
//! - `burst`: ready events streamed to one client, per stack ([`burst`]);
//! - `bench-suite`: all of it side by side, written to `benches/results/` ([`suite`],
//!   with the write batching and compression sections in [`scenarios`]).
//!
//! One HTTP client ([`client`], hyper's), one SSE parser ([`sse`]), one reader of
//! `/proc` ([`sys`]); the payloads ([`feed`]) and the content codings ([`codec`]).

pub mod burst;
pub mod chart;
pub mod client;
pub mod codec;
pub mod feed;
pub mod loadgen;
pub mod report;
pub mod scenarios;
pub mod server;
pub mod sse;
pub mod suite;
pub mod sys;
pub mod tower_sse_stack;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch: the publish stamp of every event.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A command-line number; `_` may group digits (`15_000`).
pub fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("not a number: {text:?}"))
}

/// Command-line seconds, such as `2` or `0.5`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("not seconds: {text:?}"))
}
