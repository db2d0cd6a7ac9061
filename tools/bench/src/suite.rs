//! The benchmark suite: delivery check, fan-out, idle memory, churn, cross-instance
//! (Redis), high rate, batching's cost with idle streams, burst and encode, tower-sse
//! side by side with axum, warp and two floors, written to `benches/results/`
//! (`results.md`, `results.json`, `fanout.svg`). Three sections run only when asked
//! for (`--only`, [`OPT_IN`]): compression on the wire, memory per compressed stream,
//! and the offline comparison of a compressor per stream with each event compressed
//! alone ([`crate::scenarios`]); a run with `--only` writes `results-<sections>.md` and
//! `.json` instead, so it leaves the whole suite's files alone.
//!
//! `benches/run.sh` runs it all (encode first: criterion's estimates are read back from
//! `target/criterion`). Every server is a child process (the `fanout-server` binary next
//! to this one); the load generator and burst run in this process.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Target;
use crate::codec::{Codec, Setting};
use crate::feed::Feed;
use crate::loadgen::{self, Report};
use crate::scenarios::{self, BatchIdleRun, Blocks, CompressionRun, FeedShape, MemoryRun};
use crate::server::{Stack, parse_listening};
use crate::{burst, number, report, seconds, sys, tower_sse_stack};

/// The sections a run has unless told otherwise, as `--skip` and `--only` name them.
pub const SECTIONS: [&str; 9] = [
    "check",
    "fanout",
    "idle",
    "churn",
    "redis",
    "high-rate",
    "batch-idle",
    "burst",
    "encode",
];

/// The sections that run only when `--only` names them: compression on the wire, memory
/// per compressed stream, and each event compressed alone (offline).
pub const OPT_IN: [&str; 3] = ["compression", "memory", "blocks"];

/// Every section.
pub const ALL_SECTIONS: [&str; 12] = [
    "check",
    "fanout",
    "idle",
    "churn",
    "redis",
    "high-rate",
    "batch-idle",
    "burst",
    "encode",
    "compression",
    "memory",
    "blocks",
];

/// The command line of `bench-suite`: a size (full, or `--smoke`), then overrides.
#[derive(clap::Parser, Debug, Default)]
#[command(name = "bench-suite", about = "tower-sse's benchmark suite")]
pub struct Args {
    /// Tiny sizes, about a second a part: keeps the tools from rotting.
    #[arg(long)]
    pub smoke: bool,
    /// Where the results go (default: benches/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fan-out subscribers at each step.
    #[arg(long, value_delimiter = ',', value_parser = number::<usize>)]
    pub steps: Option<Vec<usize>>,
    /// Seconds of each measuring window.
    #[arg(long, value_parser = seconds)]
    pub window: Option<Duration>,
    /// Idle connections.
    #[arg(long, value_parser = number::<usize>)]
    pub idle: Option<usize>,
    /// Fan-out rounds (every stack once per round; figures are medians of the rounds).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// High rate: subscribers at each step.
    #[arg(long, value_delimiter = ',', value_parser = number::<usize>)]
    pub high_rate_steps: Option<Vec<usize>>,
    /// High rate: events per second of the one-topic shape.
    #[arg(long)]
    pub high_rate: Option<f64>,
    /// High rate: rounds.
    #[arg(long)]
    pub high_rate_rounds: Option<usize>,
    /// High rate: tower-sse with these write delays, milliseconds (default, once the
    /// crate has its write batching setting: 0,5,20,50; refused until then).
    #[arg(long, value_delimiter = ',')]
    pub write_delays: Vec<u64>,
    /// Sections to leave out.
    #[arg(long, value_delimiter = ',', value_parser = ALL_SECTIONS)]
    pub skip: Vec<String>,
    /// Run these sections alone (the only way to run compression, memory and blocks);
    /// the files are then `results-<sections>.md` and `.json`.
    #[arg(long, value_delimiter = ',', value_parser = ALL_SECTIONS)]
    pub only: Option<Vec<String>>,
    /// Batching's cost: idle streams (and active ones next to them, at the high rate).
    #[arg(long, value_parser = number::<usize>)]
    pub batch_idle: Option<usize>,
    /// Compression: subscribers.
    #[arg(long, value_parser = number::<usize>)]
    pub compression_subscribers: Option<usize>,
    /// Compression: write delays, milliseconds (default 0,20).
    #[arg(long, value_delimiter = ',')]
    pub compression_delays: Option<Vec<u64>>,
    /// Compression: the feeds (default aircraft,aircraft-spread,sensors).
    #[arg(long, value_delimiter = ',', value_parser = COMPRESSION_FEEDS)]
    pub compression_feeds: Option<Vec<String>>,
    /// Memory: streams at each step (default 1000,5000).
    #[arg(long, value_delimiter = ',', value_parser = number::<usize>)]
    pub memory_steps: Option<Vec<usize>>,
    /// The fan-out server binary (default: `fanout-server` next to this one).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// The command to name in the report.
    #[arg(long)]
    pub command: Option<String>,
}

/// A high-rate shape: topics and events per second on each, every subscriber on all.
#[derive(Clone, Debug)]
pub struct Shape {
    /// The name in tables.
    pub name: String,
    /// Topics.
    pub topics: u64,
    /// Events per second on each topic.
    pub rate: f64,
}

/// What the suite runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Fan-out subscribers at each step.
    pub steps: Vec<usize>,
    /// Measuring window of each step.
    pub window: Duration,
    /// Fan-out rounds: each runs every stack once, in turn; the report takes the median
    /// of the rounds, so a burst of load from elsewhere lands on one round of one stack.
    pub rounds: usize,
    /// Wait after connecting before measuring.
    pub settle: Duration,
    /// New connections per second.
    pub connect_rate: f64,
    /// Events per second of the fan-out, churn and cross-instance runs.
    pub rate: f64,
    /// Subscribers and events of the delivery check.
    pub check: (usize, u64),
    /// Idle connections.
    pub idle: usize,
    /// Churn workers and duration.
    pub churn: (usize, Duration),
    /// Subscribers of the cross-instance run, split over two instances.
    pub redis: usize,
    /// High rate: subscribers at each step.
    pub high_rate_steps: Vec<usize>,
    /// High rate: the shapes.
    pub shapes: Vec<Shape>,
    /// High rate: rounds.
    pub high_rate_rounds: usize,
    /// High rate: tower-sse's write delays, milliseconds.
    pub write_delays: Vec<u64>,
    /// Burst events and runs.
    pub burst: (u64, usize),
    /// Load generator threads.
    pub client_threads: usize,
    /// Where the results go.
    pub out: PathBuf,
    /// Sections to leave out.
    pub skip: Vec<String>,
    /// Print progress.
    pub verbose: bool,
    /// The command that ran the suite, for the report.
    pub command: String,
    /// The fan-out server binary.
    pub server: PathBuf,
    /// With `--only`: just these sections.
    pub only: Option<Vec<String>>,
    /// The name of the files written (`results`, or `results-<sections>` with `--only`).
    pub stem: String,
    /// Batching's cost: idle streams, active streams next to them, their events/s.
    pub batch_idle: (usize, usize, f64),
    /// Compression: subscribers, write delays, feeds.
    pub compression: (usize, Vec<u64>, Vec<FeedShape>),
    /// Memory: streams at each step, the settings, and the events/s in all of the
    /// active streams' aircraft feed.
    pub memory: (Vec<usize>, Vec<Setting>, f64),
    /// Blocks: seconds of the aircraft feed (320 events each), least time per figure.
    pub blocks: (u64, Duration),
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `full`, or `tiny` at smoke size.
fn pick<T>(smoke: bool, full: T, tiny: T) -> T {
    if smoke { tiny } else { full }
}

/// The feeds the compression runs can use, as `--compression-feeds` names them.
pub const COMPRESSION_FEEDS: [&str; 3] = ["aircraft", "aircraft-spread", "sensors"];

/// The compression runs' feeds: `aircraft`, the aircraft example's (320 aircraft, a
/// report each per second, published together as the example's tick does);
/// `aircraft-spread`, the same spread evenly over the second (the high-rate shape: each
/// event its own write unless batched); `sensors`, the sensors example's (6 sensors,
/// spread evenly). At smoke size: 32 aircraft, 5 ticks a second.
fn feed_shapes(smoke: bool, names: &[String]) -> Vec<FeedShape> {
    let (aircraft, rate) = pick(smoke, (320, 1.0), (32, 5.0));
    let shape = |name: &str| match name {
        "aircraft" => FeedShape {
            name: format!("aircraft: {aircraft} topics x {rate} event/s, published together"),
            feed: Feed::Aircraft,
            topics: aircraft,
            rate,
            burst: true,
        },
        "aircraft-spread" => FeedShape {
            name: format!("aircraft: {aircraft} topics x {rate} event/s, spread"),
            feed: Feed::Aircraft,
            topics: aircraft,
            rate,
            burst: false,
        },
        _ => FeedShape {
            name: "sensors: 6 topics x 1 event/s, spread".into(),
            feed: Feed::Sensors,
            topics: 6,
            rate: 1.0,
            burst: false,
        },
    };
    names.iter().map(|n| shape(n)).collect()
}

fn shapes(rate: f64) -> Vec<Shape> {
    vec![
        Shape {
            name: format!("{rate} events/s"),
            topics: 1,
            rate,
        },
        Shape {
            name: "aircraft: 320 topics x 1 event/s".into(),
            topics: 320,
            rate: 1.0,
        },
    ]
}

impl Config {
    /// The full suite, or with `smoke` tiny sizes; then the overrides of `args`.
    pub fn new(args: Args) -> Result<Config, String> {
        let smoke = args.smoke;
        let secs = |full, tiny| Duration::from_millis(pick(smoke, full, tiny));
        let server = match args.server {
            Some(path) => path,
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name(format!("fanout-server{}", std::env::consts::EXE_SUFFIX)),
        };
        let high_rate = args.high_rate.unwrap_or(200.0);
        // tower-sse with a write delay: by default as soon as the crate has the setting.
        let write_delays = match args.write_delays {
            delays if !tower_sse_stack::WRITE_DELAY_SUPPORTED && !delays.is_empty() => {
                return Err("--write-delays: tower-sse has no write batching setting yet".into());
            }
            delays if !delays.is_empty() || !tower_sse_stack::WRITE_DELAY_SUPPORTED => delays,
            _ => vec![0, 5, 20, 50],
        };
        let mut skip = args.skip;
        if smoke {
            skip.push("encode".into());
        }
        Ok(Config {
            steps: args
                .steps
                .unwrap_or(pick(smoke, vec![1_000, 5_000, 15_000], vec![20])),
            window: args.window.unwrap_or(secs(6_000, 600)),
            rounds: args.rounds.unwrap_or(pick(smoke, 3, 1)).max(1),
            settle: secs(2_000, 200),
            connect_rate: pick(smoke, 2_500.0, 1_000.0),
            rate: 10.0,
            check: pick(smoke, (100, 20), (20, 10)),
            idle: args.idle.unwrap_or(pick(smoke, 15_000, 20)),
            churn: (pick(smoke, 64, 4), secs(10_000, 500)),
            redis: pick(smoke, 1_000, 20),
            high_rate_steps: args.high_rate_steps.unwrap_or(pick(
                smoke,
                vec![500, 2_000],
                vec![20],
            )),
            shapes: shapes(high_rate),
            high_rate_rounds: args.high_rate_rounds.unwrap_or(1).max(1),
            write_delays,
            burst: pick(smoke, (burst::DEFAULT_EVENTS, 3), (2_000, 1)),
            client_threads: pick(smoke, 2, 1),
            out: args.out.unwrap_or_else(|| root().join("benches/results")),
            skip,
            verbose: !smoke,
            command: args.command.unwrap_or_else(|| "benches/run.sh".into()),
            server,
            stem: args.only.as_ref().map_or("results".into(), |only| {
                format!("results-{}", only.join("-"))
            }),
            only: args.only,
            batch_idle: (
                args.batch_idle.unwrap_or(pick(smoke, 5_000, 20)),
                pick(smoke, 200, 5),
                high_rate,
            ),
            compression: (
                args.compression_subscribers
                    .unwrap_or(pick(smoke, 1_000, 10)),
                args.compression_delays.unwrap_or(vec![0, 20]),
                feed_shapes(
                    smoke,
                    &args
                        .compression_feeds
                        .unwrap_or_else(|| COMPRESSION_FEEDS.map(String::from).to_vec()),
                ),
            ),
            memory: (
                args.memory_steps
                    .unwrap_or(pick(smoke, vec![1_000, 5_000], vec![10, 20])),
                vec![Setting::SMALL, Setting::DEFAULT],
                2.0,
            ),
            blocks: (
                pick(smoke, 6, 1),
                Duration::from_millis(pick(smoke, 300, 0)),
            ),
        })
    }

    /// Whether `section` runs: named by `--only`, or else not skipped and not opt-in.
    pub fn runs(&self, section: &str) -> bool {
        match &self.only {
            Some(only) => only.iter().any(|s| s == section),
            None => !self.skip.iter().any(|s| s == section) && !OPT_IN.contains(&section),
        }
    }

    /// Progress on stderr, unless at smoke size.
    pub fn say(&self, text: &str) {
        if self.verbose {
            eprintln!("suite: {text}");
        }
    }
}

/// Reads a child's stdout up to the line `is_ready` accepts, then drains the rest on a
/// thread of its own (so that the child never blocks on a full pipe).
fn wait_for_line<T>(stdout: ChildStdout, mut is_ready: impl FnMut(&str) -> Option<T>) -> Option<T> {
    let mut lines = BufReader::new(stdout).lines();
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| is_ready(&line));
    std::thread::spawn(move || lines.for_each(drop));
    found
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fan-out server in a child process, killed when dropped.
pub(crate) struct Server {
    _process: Process,
    sse: SocketAddr,
    stats: SocketAddr,
}

impl Server {
    pub(crate) fn start(config: &Config, args: &[String]) -> Result<Server, String> {
        let mut child = Command::new(&config.server)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", config.server.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let process = Process(child);
        let (sse, stats) = wait_for_line(stdout, parse_listening)
            .ok_or_else(|| format!("server {args:?} exited before listening"))?;
        Ok(Server {
            _process: process,
            sse,
            stats,
        })
    }

    pub(crate) fn url(&self) -> Target {
        self.url_at("/events")
    }

    /// The URL of `path` on the event stream listener.
    pub(crate) fn url_at(&self, path: &str) -> Target {
        Target::parse(&format!("http://{}{path}", self.sse)).expect("url")
    }

    pub(crate) fn stats_url(&self) -> Target {
        Target::parse(&format!("http://{}/stats", self.stats)).expect("url")
    }
}

pub(crate) fn server_args(stack: &str, rate: f64, extra: &[&str]) -> Vec<String> {
    let args = ["--stack", stack, "--rate", &rate.to_string()].map(String::from);
    args.into_iter()
        .chain(extra.iter().map(|s| s.to_string()))
        .collect()
}

/// A `redis-server` on a free loopback port, no persistence, killed when dropped.
struct Redis {
    _process: Process,
    url: String,
}

impl Redis {
    fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let process = Process(child);
        wait_for_line(stdout, |line| {
            line.contains("Ready to accept connections").then_some(())
        })
        .ok_or("redis-server did not start")?;
        Ok(Redis {
            _process: process,
            url: format!("redis://127.0.0.1:{port}/"),
        })
    }
}

/// Delivery check of one stack: every subscriber received every event, in order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Check {
    /// The stack.
    pub stack: String,
    /// Subscribers.
    pub subscribers: usize,
    /// Events published.
    pub events: u64,
    /// Subscribers that received exactly events 1..=K in order.
    pub complete: usize,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

/// Everything measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Machine, date, load, command.
    pub meta: BTreeMap<String, String>,
    /// Delivery checks.
    pub check: Vec<Check>,
    /// Fan-out reports by stack: the median of the rounds, step by step.
    pub fanout: BTreeMap<String, Report>,
    /// Every fan-out round, by stack.
    pub fanout_rounds: BTreeMap<String, Vec<Report>>,
    /// Idle memory reports by stack.
    pub idle: BTreeMap<String, Report>,
    /// Churn reports by stack, two rounds each.
    pub churn: BTreeMap<String, Vec<Report>>,
    /// Cross-instance run (two tower-sse instances on one Redis).
    pub redis: Option<Report>,
    /// Why the cross-instance run did not happen, if it did not.
    pub redis_skipped: Option<String>,
    /// High rate: shape -> stack -> the median of the rounds.
    #[serde(default)]
    pub high_rate: BTreeMap<String, BTreeMap<String, Report>>,
    /// Batching's cost with idle streams.
    #[serde(default)]
    pub batch_idle: Vec<BatchIdleRun>,
    /// Compression on the wire.
    #[serde(default)]
    pub compression: Vec<CompressionRun>,
    /// Memory per compressed stream.
    #[serde(default)]
    pub memory: Vec<MemoryRun>,
    /// Each event compressed alone vs a compressor per stream, offline.
    #[serde(default)]
    pub blocks: Option<Blocks>,
    /// Burst medians: stack, events/s, MB/s.
    pub burst: Vec<(String, f64, f64)>,
    /// Encode: case -> bench -> events/s.
    pub encode: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The stacks in table order, floors last.
pub const ORDER: [&str; 5] = ["tower-sse", "axum", "warp", "hyper-floor", "raw-floor"];

fn every_stack() -> impl Iterator<Item = Stack> {
    Stack::ALL.into_iter().chain(Stack::FLOORS)
}

/// Starts a server with `server` and runs the load generator against it.
pub(crate) fn measure(
    config: &Config,
    server: &[String],
    options: loadgen::Options,
) -> Result<Report, String> {
    measure_at(config, server, &["/events"], options)
}

/// [`measure`], the connections spread round-robin over `paths` of the server.
pub(crate) fn measure_at(
    config: &Config,
    server: &[String],
    paths: &[&str],
    options: loadgen::Options,
) -> Result<Report, String> {
    let server = Server::start(config, server)?;
    loadgen::run(&loadgen::Options {
        targets: paths.iter().map(|p| server.url_at(p)).collect(),
        stats: vec![server.stats_url()],
        connect_rate: config.connect_rate,
        settle: config.settle,
        duration: config.window,
        threads: config.client_threads,
        quiet: !config.verbose,
        ..options
    })
}

pub(crate) fn steps(steps: &[usize]) -> loadgen::Options {
    loadgen::Options {
        steps: steps.to_vec(),
        ..loadgen::Options::default()
    }
}

/// What a delivery check runs: a stack, its label, more server arguments, and the
/// coding its subscribers ask for.
struct CheckCase {
    label: String,
    stack: Stack,
    extra: Vec<String>,
    coding: Option<Codec>,
}

/// Every stack; then tower-sse with a write delay of 20 ms, and with each codec, without
/// and with that delay.
fn check_cases() -> Vec<CheckCase> {
    let mut cases: Vec<CheckCase> = Stack::ALL
        .into_iter()
        .map(|stack| CheckCase {
            label: stack.name().into(),
            stack,
            extra: Vec::new(),
            coding: None,
        })
        .collect();
    for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
        for delay in [None, Some(20)] {
            if codec.is_none() && delay.is_none() {
                continue;
            }
            let (mut label, mut extra) = (String::from("tower-sse"), Vec::new());
            if let Some(codec) = codec {
                label.push_str(&format!(", {codec}"));
                extra.extend(["--compression".into(), codec.token().into()]);
            }
            if let Some(delay) = delay {
                label.push_str(&format!(", write delay {delay} ms"));
                extra.extend(["--write-delay-ms".into(), delay.to_string()]);
            }
            cases.push(CheckCase {
                label,
                stack: Stack::TowerSse,
                extra,
                coding: codec,
            });
        }
    }
    cases
}

fn check_delivery(config: &Config, case: &CheckCase) -> Result<Check, String> {
    let (subscribers, events) = config.check;
    let (k, n) = (events.to_string(), subscribers.to_string());
    let mut extra = vec!["--events", &k, "--start-after", &n];
    extra.extend(case.extra.iter().map(String::as_str));
    let report = measure(
        config,
        &server_args(case.stack.name(), config.rate, &extra),
        loadgen::Options {
            duration: Duration::from_secs(3),
            until_seq: Some(events),
            accept_encoding: case.coding,
            ..steps(&[subscribers])
        },
    )?;
    Ok(Check {
        stack: case.label.clone(),
        subscribers,
        events,
        complete: report.complete.unwrap_or(0),
        errors: report.errors,
    })
}

/// Two rounds of churn on one server: memory only kept by the allocator for reuse stays
/// level from the first round to the second; a leak grows.
fn churn(config: &Config, stack: Stack) -> Result<Vec<Report>, String> {
    let server = Server::start(config, &server_args(stack.name(), config.rate, &[]))?;
    let options = loadgen::Options {
        targets: vec![server.url()],
        stats: vec![server.stats_url()],
        churn: Some(config.churn.0),
        duration: config.churn.1,
        settle: config.settle,
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    Ok(vec![loadgen::run(&options)?, loadgen::run(&options)?])
}

fn cross_instance(config: &Config) -> Result<Report, String> {
    let redis = Redis::start()?;
    let a = Server::start(
        config,
        &server_args("tower-sse", config.rate, &["--redis", &redis.url]),
    )?;
    let b = Server::start(
        config,
        &server_args("tower-sse", 0.0, &["--redis", &redis.url]),
    )?;
    loadgen::run(&loadgen::Options {
        targets: vec![a.url(), b.url()],
        stats: vec![a.stats_url(), b.stats_url()],
        connect_rate: config.connect_rate,
        // A Redis-backed subscription starts once its instance's reader covers the
        // topic: give that a moment even at smoke size.
        settle: config.settle.max(Duration::from_secs(1)),
        duration: config.window,
        threads: config.client_threads,
        quiet: !config.verbose,
        ..steps(&[config.redis])
    })
}

/// The stacks of the high-rate runs: label, stack and write delay.
fn high_rate_stacks(config: &Config) -> Vec<(String, &'static str, Option<u64>)> {
    let stacks = every_stack().map(|s| (s.name().to_string(), s.name(), None));
    let delays = config.write_delays.iter().map(|&delay| {
        let label = format!("tower-sse (write delay {delay} ms)");
        (label, "tower-sse", Some(delay))
    });
    stacks.chain(delays).collect()
}

fn high_rate(config: &Config, shape: &Shape) -> Result<BTreeMap<String, Report>, String> {
    let mut rounds: BTreeMap<String, Vec<Report>> = BTreeMap::new();
    for round in 1..=config.high_rate_rounds {
        for (label, stack, delay) in high_rate_stacks(config) {
            config.say(&format!(
                "high rate, {}, round {round}: {label}",
                shape.name
            ));
            let (topics, delay) = (shape.topics.to_string(), delay.map(|d| d.to_string()));
            let mut extra = vec!["--topics", &topics];
            extra.extend(delay.iter().flat_map(|d| ["--write-delay-ms", d]));
            let args = server_args(stack, shape.rate, &extra);
            let report = measure(config, &args, steps(&config.high_rate_steps))?;
            rounds.entry(label).or_default().push(report);
        }
    }
    Ok(rounds
        .into_iter()
        .map(|(label, r)| (label, median_report(&r)))
        .collect())
}

/// Step by step, the median of each figure over the rounds (of two, the upper one);
/// losses and failures: the largest; connections: the fewest; errors: summed.
pub fn median_report(reports: &[Report]) -> Report {
    let values: Vec<Value> = reports
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let Some(mut out) = values.first().cloned() else {
        return Report::default();
    };
    if let Some(steps) = out["steps"].as_array_mut() {
        for (index, step) in steps.iter_mut().enumerate() {
            let all: Vec<&Value> = values
                .iter()
                .filter_map(|v| v["steps"].get(index))
                .collect();
            *step = combine(&all, "");
        }
    }
    let mut report: Report = serde_json::from_value(out).unwrap_or_default();
    report.errors.clear();
    for (kind, n) in reports.iter().flat_map(|r| &r.errors) {
        *report.errors.entry(kind.clone()).or_default() += n;
    }
    report
}

fn combine(values: &[&Value], key: &str) -> Value {
    if let Some(Value::Object(first)) = values.first() {
        let field = |k: &String| values.iter().map(|v| &v[k]).collect::<Vec<_>>();
        return Value::Object(
            first
                .keys()
                .map(|k| (k.clone(), combine(&field(k), k)))
                .collect(),
        );
    }
    let mut numbers: Vec<&Value> = values.iter().copied().filter(|v| v.is_number()).collect();
    numbers.sort_by(|a, b| {
        a.as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b.as_f64().unwrap_or(0.0))
    });
    let pick = match key {
        "lost" | "reordered" | "failed" => numbers.last(),
        "connected" | "open" => numbers.first(),
        _ => numbers.get(numbers.len() / 2),
    };
    pick.map_or(Value::Null, |v| (*v).clone())
}

/// The encode cases and the benches of each, as `benches/encode.rs` names them.
pub const ENCODE_CASES: [&str; 4] = [
    "position-json",
    "position-str",
    "multiline-5",
    "payload-64k",
];
pub const ENCODE_BENCHES: [&str; 4] = ["tower-sse", "tower-sse/body", "axum", "warp"];

/// Criterion's median estimates, as events per second.
fn read_encode() -> BTreeMap<String, BTreeMap<String, f64>> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let dir =
        std::env::var_os("CRITERION_HOME").map_or_else(|| target.join("criterion"), PathBuf::from);
    let mut all = BTreeMap::new();
    for case in ENCODE_CASES {
        let benches: BTreeMap<String, f64> = ENCODE_BENCHES
            .iter()
            .filter_map(|bench| {
                let path = dir
                    .join(case)
                    .join(bench.replace('/', "_"))
                    .join("new/estimates.json");
                let value: Value =
                    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
                Some((
                    bench.to_string(),
                    1e9 / value["median"]["point_estimate"].as_f64()?,
                ))
            })
            .collect();
        if !benches.is_empty() {
            all.insert(case.to_string(), benches);
        }
    }
    all
}

fn git_commit() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output();
    output
        .ok()
        .filter(|o| o.status.success())
        .map_or("?".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        })
}

/// Runs the suite and writes its files into `config.out`.
pub fn run(config: &Config) -> Result<Results, String> {
    let mut results = Results::default();
    let date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .map_err(|e| e.to_string())?;
    let cores = std::thread::available_parallelism().map_or("?".into(), |n| n.to_string());
    results.meta = BTreeMap::from([
        ("date".into(), date),
        ("load_before".into(), sys::load_average()),
        ("cpu".into(), sys::cpu_model()),
        ("cores".into(), cores),
        ("commit".into(), git_commit()),
        ("command".into(), config.command.clone()),
        ("open_files_limit".into(), sys::open_files_limit()),
    ]);

    if config.runs("check") {
        for case in check_cases() {
            config.say(&format!("delivery check: {}", case.label));
            results.check.push(check_delivery(config, &case)?);
        }
    }
    if config.runs("fanout") {
        for round in 1..=config.rounds {
            for stack in every_stack() {
                config.say(&format!(
                    "fan-out round {round}/{}: {} {:?}",
                    config.rounds,
                    stack.name(),
                    config.steps
                ));
                let report = measure(
                    config,
                    &server_args(stack.name(), config.rate, &[]),
                    steps(&config.steps),
                )?;
                results
                    .fanout_rounds
                    .entry(stack.name().into())
                    .or_default()
                    .push(report);
            }
        }
        for (stack, reports) in &results.fanout_rounds {
            results.fanout.insert(stack.clone(), median_report(reports));
        }
    }
    if config.runs("idle") {
        for stack in every_stack() {
            config.say(&format!("idle: {} x {}", stack.name(), config.idle));
            let options = loadgen::Options {
                duration: config.window.min(Duration::from_secs(2)),
                ..steps(&[config.idle])
            };
            let report = measure(config, &server_args(stack.name(), 0.0, &[]), options)?;
            results.idle.insert(stack.name().into(), report);
        }
    }
    if config.runs("churn") {
        for stack in Stack::ALL {
            config.say(&format!("churn: {}", stack.name()));
            results
                .churn
                .insert(stack.name().into(), churn(config, stack)?);
        }
    }
    if !config.runs("redis") {
    } else if cfg!(feature = "redis") {
        config.say("cross-instance: two tower-sse instances on one Redis");
        match cross_instance(config) {
            Ok(report) => results.redis = Some(report),
            Err(err) => {
                config.say(&format!("cross-instance skipped: {err}"));
                results.redis_skipped = Some(err);
            }
        }
    } else {
        results.redis_skipped = Some("built without the `redis` feature".into());
    }
    if config.runs("high-rate") {
        for shape in &config.shapes {
            results
                .high_rate
                .insert(shape.name.clone(), high_rate(config, shape)?);
        }
    }
    if config.runs("batch-idle") {
        results.batch_idle = scenarios::batch_idle(config)?;
    }
    if config.runs("compression") {
        results.compression = scenarios::compression(config)?;
    }
    if config.runs("memory") {
        results.memory = scenarios::memory(config)?;
    }
    if config.runs("blocks") {
        config.say("blocks: each event compressed alone vs a compressor per stream");
        results.blocks = Some(scenarios::blocks(config)?);
    }
    if config.runs("burst") {
        config.say("burst");
        let rt = burst::runtime();
        let options = burst::Options {
            events: config.burst.0,
            runs: config.burst.1,
            stacks: Vec::new(),
        };
        let say = |run: &burst::Run| {
            config.say(&format!(
                "burst {}: {:.0} events/s",
                run.stack.name(),
                run.events_per_sec()
            ));
        };
        for (stack, runs) in burst::bench(&rt, &options, say)? {
            let run = burst::median(&runs);
            results
                .burst
                .push((stack.name().into(), run.events_per_sec(), run.mb_per_sec()));
        }
    }
    if config.runs("encode") {
        results.encode = read_encode();
    }
    results
        .meta
        .insert("load_after".into(), sys::load_average());

    std::fs::create_dir_all(&config.out).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    let stem = &config.stem;
    write(&config.out.join(format!("{stem}.json")), &json)?;
    write(
        &config.out.join(format!("{stem}.md")),
        &report::markdown(&results, config),
    )?;
    if !results.fanout.is_empty() {
        write(&config.out.join("fanout.svg"), &report::svg(&results)?)?;
    }
    Ok(results)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
