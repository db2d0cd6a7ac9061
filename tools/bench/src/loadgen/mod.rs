//! The load generator (the `loadgen` binary): opens event streams against any URL,
//! parses their events with `eventsource-stream`, and measures publish-to-receive
//! latency from the stamp the publisher puts in each event's data ([`stream`]).
//!
//! - `-n 1000,5000,15000`: a ramp; open 1,000 streams (as fast as the server answers,
//!   512 at a time), wait `--settle`, measure for `--duration`, add 4,000, and so on.
//! - `--pid PID` (repeatable): server processes whose CPU time, write system calls and
//!   RSS are read from `/proc` around each window.
//! - `--churn C` ([`churn`]); `--hold` ([`hold`]): a worker of a run of more streams than
//!   one process may hold.
//! - `--bind 127.0.0.2,..`: source addresses, round-robin (more ports).
//! - `--accept-encoding <codec>`: asks for a compressed stream and decodes it.

mod churn;
mod hold;
mod options;
mod stream;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub use options::{Options, seconds};
use stream::{Shared, lock, open};
use tokio::task::JoinSet;

use crate::proc::Usage;
use crate::results::{Report, Step};

/// Runs the generator as `options` say, on a runtime of its own.
pub fn run(options: &Options) -> Result<Report, String> {
    if options.steps.is_empty() || options.steps.windows(2).any(|w| w[1] < w[0]) {
        return Err("-n: a rising list of stream counts".into());
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(options.threads.max(1)).enable_all();
    let (runtime, shared) = (
        runtime.build().map_err(|e| e.to_string())?,
        Shared::new(options),
    );
    let steps = runtime.block_on(async {
        let steps = match (options.hold, options.churn) {
            (true, _) => hold::run(options, &shared).await.map(|()| Vec::new()),
            (false, Some(_)) => churn::run(options, &shared).await,
            (false, None) => ramp(options, &shared).await,
        };
        shared.stop.cancel();
        steps
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let errors = lock(&shared.errors).clone();
    steps.map(|steps| Report { steps, errors })
}

async fn ramp(options: &Options, shared: &Arc<Shared>) -> Result<Vec<Step>, String> {
    let (base, mut tasks, mut steps) = (options.usage(), JoinSet::new(), Vec::new());
    for &count in &options.steps {
        let opened = open(options, shared, &mut tasks, count).await;
        opened.map_err(|e| format!("{count} streams: {e}"))?;
        tokio::time::sleep(options.settle).await;
        let step = window(options, shared, base, count).await;
        if !options.quiet {
            eprintln!("loadgen: {}", serde_json::json!(step));
        }
        steps.push(step);
    }
    Ok(steps)
}

/// Measures one window with `count` streams open.
async fn window(options: &Options, shared: &Shared, base: Option<Usage>, count: usize) -> Step {
    let wire = &*shared.request.wire;
    let counters = [&shared.events, &shared.lost, &shared.reordered, wire];
    let before = counters.map(|c| c.load(Relaxed));
    shared.latency();
    let (start, started) = (options.usage(), Instant::now());
    tokio::time::sleep(options.duration).await;
    let (secs, end) = (started.elapsed().as_secs_f64(), options.usage());
    let [events, lost, reordered, wire] =
        std::array::from_fn(|i| counters[i].load(Relaxed) - before[i]);
    let per_event = |n: u64| (events > 0).then(|| n as f64 / events as f64);
    // Per delivered event: what `of` grew by in the servers over the window.
    let server = |of: fn(Usage) -> u64| start.zip(end).and_then(|(s, e)| per_event(of(e) - of(s)));
    let grown = |(b, e): (Usage, Usage)| (e.rss_kib as f64 - b.rss_kib as f64) / count as f64;
    Step {
        connections: count,
        connected: shared.connected.load(Relaxed),
        failed: shared.failed.load(Relaxed),
        window_secs: secs,
        events,
        events_per_sec: events as f64 / secs,
        lost,
        reordered,
        latency: shared.latency(),
        server_cpu_us_per_event: server(|u| u.cpu_ns).map(|ns| ns / 1e3),
        server_syscw_per_event: server(|u| u.syscw),
        server_rss_base_kib: base.map(|b| b.rss_kib),
        server_rss_kib: end.map(|e| e.rss_kib),
        server_rss_per_conn_kib: base.zip(end).map(grown),
        wire_bytes_per_event: per_event(wire),
        ..Step::default()
    }
}
