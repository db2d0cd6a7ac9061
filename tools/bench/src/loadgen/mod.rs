//! The load generator (the `loadgen` binary): opens many event streams against any URL,
//! parses their events with `eventsource-stream`, and measures publish-to-receive
//! latency from the stamp the publisher puts in each event's data.
//!
//! - `-n 1000,5000,15000` is a ramp: open 1,000 streams at `--connect-rate` per second,
//!   wait `--settle`, measure for `--duration`, add 4,000 more, and so on.
//! - `--pid PID` (repeatable): the server processes whose CPU time, write system calls
//!   and RSS are read from `/proc` around each window: CPU and writes per delivered
//!   event, RSS per connection.
//! - `--control URL`: a fan-out server's control listener: `/start` once every stream
//!   is open (with `--until-seq`), `/stats` for the subscribers it counts (churn).
//! - `--until-seq K`: each stream ends at event K; the report counts the streams that
//!   received exactly 1..=K in order.
//! - `--churn C`: C workers each loop connect, GET, read the response head, close.
//! - `--hold`: a worker for runs of more streams than one process may hold (see
//!   [`hold`]).
//! - `--bind 127.0.0.2,127.0.0.3`: source addresses, round-robin (more ports).
//! - `--accept-encoding <codec>`: asks for a compressed stream and decodes it; every
//!   run counts the bytes on the wire, in the body, and decoded, per event.

mod churn;
pub mod hold;
mod report;
pub(crate) mod stream;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

pub use report::{Latency, Report, Step};
use stream::{Shared, lock};
use tokio::task::JoinSet;

use crate::client::{self, Target};
use crate::codec::Codec;
use crate::proc::Usage;

/// Command-line seconds, such as `2` or `0.5`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs = text.parse::<f64>().ok();
    let duration = secs.and_then(|s| Duration::try_from_secs_f64(s).ok());
    duration.ok_or_else(|| format!("not seconds: {text:?}"))
}

/// What the generator does.
#[derive(clap::Parser, Clone, Debug)]
#[command(name = "loadgen", about = "A Server-Sent Events load generator")]
pub struct Options {
    /// An event stream URL; repeat it to spread streams over several, round-robin.
    #[arg(long = "url", value_parser = Target::parse, required = true)]
    pub targets: Vec<Target>,
    /// Streams held at each step of a rising ramp, such as `1000,5000,15000`.
    #[arg(
        short = 'n',
        long = "connections",
        value_delimiter = ',',
        default_value = "100"
    )]
    pub steps: Vec<usize>,
    /// New streams per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Seconds between the last stream of a step and its window.
    #[arg(long, value_parser = seconds, default_value = "2")]
    pub settle: Duration,
    /// Seconds of each window (or of the churn).
    #[arg(long, value_parser = seconds, default_value = "10")]
    pub duration: Duration,
    /// A server process to read from `/proc`; repeatable.
    #[arg(long = "pid")]
    pub pids: Vec<u32>,
    /// A fan-out server's control URL (`http://host:port`); repeatable.
    #[arg(long = "control", value_parser = Target::parse)]
    pub controls: Vec<Target>,
    /// Churn workers: connect, GET, read the head, close, again.
    #[arg(long)]
    pub churn: Option<usize>,
    /// End each stream at this `seq`; count those that got 1..=K in order.
    #[arg(long)]
    pub until_seq: Option<u64>,
    /// Hold streams as told on standard input (see `loadgen::hold`).
    #[arg(long)]
    pub hold: bool,
    /// Source addresses to bind, round-robin.
    #[arg(long = "bind", value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Ask for streams compressed with this codec, and decode them.
    #[arg(long, value_enum)]
    pub accept_encoding: Option<Codec>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds to wait for a step's streams to answer (or, `--hold`, for events).
    #[arg(long, value_parser = seconds, default_value = "60")]
    pub timeout: Duration,
    /// Write the report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress lines.
    #[arg(short, long)]
    pub quiet: bool,
}

impl Options {
    /// The defaults, for `targets`.
    pub fn new(targets: Vec<Target>) -> Options {
        let mut options: Options =
            clap::Parser::parse_from(["loadgen", "--url", "http://127.0.0.1:1/"]);
        options.targets = targets;
        options
    }
}

/// Runs the generator as `options` say, on a runtime of its own.
pub fn run(options: &Options) -> Result<Report, String> {
    if options.steps.is_empty() || options.steps.windows(2).any(|w| w[1] < w[0]) {
        return Err("-n: a rising list of stream counts".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let shared = Shared::new(options.accept_encoding, options.quiet);
    let result = runtime.block_on(async {
        if options.hold {
            return hold::run(options, &shared)
                .await
                .map(|()| Report::default());
        }
        let result = match options.churn {
            Some(workers) => churn::run(options, &shared, workers).await,
            None => ramp(options, &shared).await,
        };
        shared.stop.cancel();
        result
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    let mut report = result?;
    report.urls = options.targets.iter().map(Target::to_string).collect();
    report.errors = lock(&shared.errors).clone();
    if options.until_seq.is_some() {
        report.complete = Some(shared.complete.load(Relaxed));
    }
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

/// Streams being opened at once when they are opened as fast as the server answers.
const IN_FLIGHT: usize = 512;

/// Opens streams until `count` are open, at `rate` per second (`None`: as fast as the
/// server answers, [`IN_FLIGHT`] at a time).
pub(crate) async fn open(
    options: &Options,
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    count: usize,
    rate: Option<f64>,
) -> Result<f64, String> {
    let started = Instant::now();
    let first = tasks.len();
    let mut opened = first;
    while opened < count {
        let due = match rate {
            Some(r) => first + (started.elapsed().as_secs_f64() * r) as usize + 1,
            None => {
                let room = || shared.answered() + IN_FLIGHT > opened;
                let _ = wait_for(shared, options.timeout, room).await;
                shared.answered() + IN_FLIGHT
            }
        };
        while opened < count.min(due) {
            let target = options.targets[opened % options.targets.len()].clone();
            let source = (!options.sources.is_empty())
                .then(|| options.sources[opened % options.sources.len()]);
            tasks.spawn(stream::subscriber(
                target,
                source,
                shared.clone(),
                options.until_seq,
            ));
            opened += 1;
        }
        if opened < count && rate.is_some() {
            // Pacing the connect rate, in batches every 10 ms.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let waited = wait_for(shared, options.timeout, || shared.answered() >= opened).await;
    waited.map_err(|()| {
        let connected = shared.connected.load(Relaxed);
        format!(
            "only {connected} of {opened} streams answered in {:?}",
            options.timeout
        )
    })?;
    Ok(started.elapsed().as_secs_f64())
}

/// Waits until `done`, woken by every change of the streams; `Err` at the deadline.
pub(crate) async fn wait_for(
    shared: &Shared,
    timeout: Duration,
    done: impl Fn() -> bool,
) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if done() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Err(());
        }
    }
}

/// Sums the servers' usage.
fn usage(options: &Options) -> Option<Usage> {
    (!options.pids.is_empty())
        .then(|| Usage::sum(&options.pids))
        .flatten()
}

/// Tells every control listener `path` (`/start`).
async fn tell(options: &Options, path: &str) -> Result<(), String> {
    for control in &options.controls {
        client::get_json(&control.at(path)).await?;
    }
    Ok(())
}

async fn ramp(options: &Options, shared: &Arc<Shared>) -> Result<Report, String> {
    let mut report = Report::default();
    let base = usage(options);
    let mut tasks = JoinSet::new();
    for (index, &count) in options.steps.iter().enumerate() {
        let label = format!(
            "step {}/{} ({count} streams)",
            index + 1,
            options.steps.len()
        );
        let connect_secs = open(
            options,
            shared,
            &mut tasks,
            count,
            Some(options.connect_rate),
        )
        .await
        .map_err(|e| format!("{label}: {e}"))?;
        let counts = Step {
            connections: count,
            connected: shared.connected.load(Relaxed),
            failed: shared.failed.load(Relaxed),
            connect_secs,
            ..Step::default()
        };
        if options.until_seq.is_some() {
            // Every stream ends by itself once it has the last event.
            tell(options, "/start").await?;
            let all_done = async { while tasks.join_next().await.is_some() {} };
            tokio::time::timeout(options.timeout, all_done)
                .await
                .map_err(|_| format!("{label}: streams did not finish"))?;
            report.steps.push(Step {
                events: shared.events.load(Relaxed),
                lost: shared.lost.load(Relaxed),
                reordered: shared.reordered.load(Relaxed),
                latency: Latency::of(&lock(&shared.latency)),
                ..counts
            });
            continue;
        }
        tokio::time::sleep(options.settle).await;
        let step = window(options, shared, base, counts).await;
        if !options.quiet {
            eprintln!("loadgen: {label}: {}", step_line(&step));
        }
        report.steps.push(step);
    }
    Ok(report)
}

/// Measures one window.
async fn window(options: &Options, shared: &Shared, base: Option<Usage>, counts: Step) -> Step {
    let counters = [
        &shared.events,
        &shared.lost,
        &shared.reordered,
        &*shared.wire,
        &shared.body,
        &shared.decoded,
    ];
    let before = counters.map(|c| c.load(Relaxed));
    lock(&shared.latency).reset();
    let (start, client, started) = (usage(options), Usage::of(0), Instant::now());
    tokio::time::sleep(options.duration).await;
    let secs = started.elapsed().as_secs_f64();
    let (end, client_end) = (usage(options), Usage::of(0));
    let after = counters.map(|c| c.load(Relaxed));
    let [events, lost, reordered, wire, body, decoded] =
        std::array::from_fn(|i| after[i] - before[i]);
    let per_event = |n: u64| (events > 0).then(|| n as f64 / events as f64);
    let delta = start
        .zip(end)
        .map(|(s, e)| (e.cpu_ns - s.cpu_ns, e.syscw - s.syscw));
    let client_ns = client
        .zip(client_end)
        .map_or(0, |(s, e)| e.cpu_ns - s.cpu_ns);
    Step {
        window_secs: secs,
        events,
        events_per_sec: events as f64 / secs,
        lost,
        reordered,
        latency: Latency::of(&lock(&shared.latency)),
        server_cpu_us_per_event: delta.and_then(|(cpu, _)| per_event(cpu).map(|ns| ns / 1e3)),
        server_syscw_per_event: delta.and_then(|(_, syscw)| per_event(syscw)),
        server_rss_base_kib: base.map(|b| b.rss_kib),
        server_rss_kib: end.map(|e| e.rss_kib),
        server_rss_per_conn_kib: base
            .zip(end)
            .map(|(b, e)| (e.rss_kib as f64 - b.rss_kib as f64) / counts.connections.max(1) as f64),
        client_cpu_cores: client_ns as f64 / 1e9 / secs,
        wire_bytes_per_event: per_event(wire),
        body_bytes_per_event: per_event(body),
        decoded_bytes_per_event: per_event(decoded),
        ..counts
    }
}

/// One line summing up a step.
pub fn step_line(step: &Step) -> String {
    let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let ms = |us: u64| us as f64 / 1e3;
    format!(
        "{} streams ({} failed): {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, lost {}, \
         server {} us/event, {} writes/event, {} KiB/stream",
        step.connections,
        step.failed,
        step.events_per_sec,
        ms(step.latency.p50_us),
        ms(step.latency.p99_us),
        step.lost,
        opt(step.server_cpu_us_per_event),
        opt(step.server_syscw_per_event),
        opt(step.server_rss_per_conn_kib),
    )
}
