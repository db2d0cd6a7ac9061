//! The benchmark suite: delivery check, fan-out, idle memory, churn, cross-instance
//! (Redis), high rate, burst and encode, tower-sse side by side with axum, warp and two
//! floors, written to `benches/results/` (`results.md`, `results.json`, `fanout.svg`).
//!
//! `benches/run.sh` runs it all (encode first: criterion's estimates are read back from
//! `target/criterion`). Every server is a child process (the `fanout-server` binary next
//! to this one); the load generator and burst run in this process.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Target;
use crate::loadgen::{self, Report, Step};
use crate::server::{Stack, parse_listening};
use crate::{burst, chart, number, seconds, sys, tower_sse_stack};

/// The sections, as `--skip` names them.
pub const SECTIONS: [&str; 8] = [
    "check",
    "fanout",
    "idle",
    "churn",
    "redis",
    "high-rate",
    "burst",
    "encode",
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
    /// High rate: also tower-sse with these write delays, milliseconds (refused until
    /// the crate has a write batching setting).
    #[arg(long, value_delimiter = ',')]
    pub write_delays: Vec<u64>,
    /// Sections to leave out.
    #[arg(long, value_delimiter = ',', value_parser = SECTIONS)]
    pub skip: Vec<String>,
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
}

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `full`, or `tiny` at smoke size.
fn pick<T>(smoke: bool, full: T, tiny: T) -> T {
    if smoke { tiny } else { full }
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
        if !args.write_delays.is_empty() && !tower_sse_stack::WRITE_DELAY_SUPPORTED {
            return Err("--write-delays: tower-sse has no write batching setting yet".into());
        }
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
            write_delays: args.write_delays,
            burst: pick(smoke, (burst::DEFAULT_EVENTS, 3), (2_000, 1)),
            client_threads: pick(smoke, 2, 1),
            out: args.out.unwrap_or_else(|| root().join("benches/results")),
            skip,
            verbose: !smoke,
            command: args.command.unwrap_or_else(|| "benches/run.sh".into()),
            server,
        })
    }

    fn runs(&self, section: &str) -> bool {
        !self.skip.iter().any(|s| s == section)
    }

    fn say(&self, text: &str) {
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
struct Server {
    _process: Process,
    sse: SocketAddr,
    stats: SocketAddr,
}

impl Server {
    fn start(config: &Config, args: &[String]) -> Result<Server, String> {
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

    fn url(&self) -> Target {
        Target::parse(&format!("http://{}/events", self.sse)).expect("url")
    }

    fn stats_url(&self) -> Target {
        Target::parse(&format!("http://{}/stats", self.stats)).expect("url")
    }
}

fn server_args(stack: &str, rate: f64, extra: &[&str]) -> Vec<String> {
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
    /// Burst medians: stack, events/s, MB/s.
    pub burst: Vec<(String, f64, f64)>,
    /// Encode: case -> bench -> events/s.
    pub encode: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The stacks in table order, floors last.
const ORDER: [&str; 5] = ["tower-sse", "axum", "warp", "hyper-floor", "raw-floor"];

fn every_stack() -> impl Iterator<Item = Stack> {
    Stack::ALL.into_iter().chain(Stack::FLOORS)
}

/// Starts a server with `server` and runs the load generator against it.
fn measure(
    config: &Config,
    server: &[String],
    options: loadgen::Options,
) -> Result<Report, String> {
    let server = Server::start(config, server)?;
    loadgen::run(&loadgen::Options {
        targets: vec![server.url()],
        stats: vec![server.stats_url()],
        connect_rate: config.connect_rate,
        settle: config.settle,
        duration: config.window,
        threads: config.client_threads,
        quiet: !config.verbose,
        ..options
    })
}

fn steps(steps: &[usize]) -> loadgen::Options {
    loadgen::Options {
        steps: steps.to_vec(),
        ..loadgen::Options::default()
    }
}

fn check_delivery(config: &Config, stack: Stack) -> Result<Check, String> {
    let (subscribers, events) = config.check;
    let (k, n) = (events.to_string(), subscribers.to_string());
    let extra = ["--events", &k, "--start-after", &n];
    let report = measure(
        config,
        &server_args(stack.name(), config.rate, &extra),
        loadgen::Options {
            duration: Duration::from_secs(3),
            until_seq: Some(events),
            ..steps(&[subscribers])
        },
    )?;
    Ok(Check {
        stack: stack.name().into(),
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

/// The stacks of the high-rate runs: label and server arguments.
fn high_rate_stacks(config: &Config) -> Vec<(String, Vec<&'static str>, Option<String>)> {
    let mut stacks: Vec<_> = every_stack()
        .map(|s| (s.name().to_string(), vec![s.name()], None))
        .collect();
    for delay in &config.write_delays {
        let label = format!("tower-sse (write delay {delay} ms)");
        stacks.push((label, vec!["tower-sse"], Some(delay.to_string())));
    }
    stacks
}

fn high_rate(config: &Config, shape: &Shape) -> Result<BTreeMap<String, Report>, String> {
    let mut rounds: BTreeMap<String, Vec<Report>> = BTreeMap::new();
    for round in 1..=config.high_rate_rounds {
        for (label, stack, delay) in high_rate_stacks(config) {
            config.say(&format!(
                "high rate, {}, round {round}: {label}",
                shape.name
            ));
            let topics = shape.topics.to_string();
            let mut extra = vec!["--topics", &topics];
            if let Some(delay) = &delay {
                extra.extend(["--write-delay-ms", delay]);
            }
            let args = server_args(stack[0], shape.rate, &extra);
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
const ENCODE_BENCHES: [&str; 4] = ["tower-sse", "tower-sse/body", "axum", "warp"];

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
        for stack in Stack::ALL {
            config.say(&format!("delivery check: {}", stack.name()));
            results.check.push(check_delivery(config, stack)?);
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
    write(&config.out.join("results.json"), &json)?;
    write(&config.out.join("results.md"), &markdown(&results, config))?;
    write(&config.out.join("fanout.svg"), &svg(&results)?)?;
    Ok(results)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// The report.

fn ms(us: u64) -> String {
    let ms = us as f64 / 1e3;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s == s.trunc() {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn mib(kib: Option<u64>) -> String {
    opt(kib.map(|k| k as f64 / 1024.0), 1)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b)
}

fn step_of<'a>(results: &'a Results, stack: &str, n: usize) -> Option<&'a Step> {
    results
        .fanout
        .get(stack)?
        .steps
        .iter()
        .find(|s| s.connections == n)
}

/// A Markdown table.
fn table(md: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(
        md,
        "| {} |\n|{}",
        head.join(" | "),
        "---|".repeat(head.len())
    );
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');
}

/// Target verdicts: (target, measured, met).
pub fn targets(results: &Results, config: &Config) -> Vec<(String, String, Option<bool>)> {
    let mut rows = Vec::new();
    type Metric = fn(&Step) -> Option<f64>;
    let metrics: [(&str, Metric); 2] = [
        ("CPU/event", |s| s.server_cpu_us_per_event),
        ("p99", |s| Some(s.latency.p99_us as f64)),
    ];
    for &n in &config.steps {
        for (name, metric) in metrics {
            let of = |stack| step_of(results, stack, n).and_then(metric);
            let r = ratio(of("tower-sse"), of("axum"));
            let floor = ratio(of("raw-floor"), of("axum"))
                .map_or(String::new(), |f| format!(" (raw-socket floor: {f:.2}x)"));
            rows.push((
                format!("fan-out {name} at {n} <= 1/3 of axum"),
                format!("{}x of axum{floor}", opt(r, 2)),
                r.map(|r| r <= 1.0 / 3.0),
            ));
        }
    }
    let idle = |stack: &str| {
        results
            .idle
            .get(stack)?
            .steps
            .first()?
            .server_rss_per_conn_kib
    };
    let hyper = idle("hyper-floor").map_or(String::new(), |h| {
        format!(" (hyper's connection alone, hyper-floor: {h:.2} KiB)")
    });
    rows.push((
        "idle memory <= 8 KiB per connection".into(),
        format!("{} KiB{hyper}", opt(idle("tower-sse"), 2)),
        idle("tower-sse").map(|k| k <= 8.0),
    ));
    let burst = |name: &str| results.burst.iter().find(|b| b.0 == name).map(|b| b.1);
    let b = ratio(burst("tower-sse"), burst("axum"));
    rows.push((
        "burst >= 4x axum".into(),
        format!("{}x", opt(b, 2)),
        b.map(|r| r >= 4.0),
    ));
    for case in ENCODE_CASES {
        let Some(e) = results.encode.get(case) else {
            continue;
        };
        let r = ratio(e.get("tower-sse").copied(), e.get("axum").copied());
        let rb = ratio(e.get("tower-sse/body").copied(), e.get("axum").copied());
        rows.push((
            format!("encode {case} >= 2x axum"),
            format!("{}x (through the body: {}x)", opt(r, 2), opt(rb, 2)),
            r.map(|r| r >= 2.0),
        ));
    }
    rows
}

/// The Markdown report.
pub fn markdown(results: &Results, config: &Config) -> String {
    let meta = |key: &str| results.meta.get(key).cloned().unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# tower-sse benchmark results\n\n\
         - date: {}; commit {}\n- machine: {} cores ({}), shared; open files per process: {}\n\
         - load average (1/5/15 min): {} before, {} after\n- command: `{}`\n\n\
         Servers and the load generator are separate processes on the same cores \
         (loopback). Every server: hyper's HTTP/1 connection, tokio with 2 workers, one \
         topic, 10 events/s of a 140-byte JSON payload carrying its publish time (high \
         rate: more topics and events, below). Ratios are taken within this one run.\n\n\
         ## Targets\n",
        meta("date"),
        meta("commit"),
        meta("cores"),
        meta("cpu"),
        meta("open_files_limit"),
        meta("load_before"),
        meta("load_after"),
        meta("command"),
    );
    let verdict = |met: Option<bool>| match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let rows = targets(results, config)
        .into_iter()
        .map(|(t, m, met)| vec![t, m, verdict(met).into()]);
    table(&mut md, &["target", "measured", ""], rows);

    if !results.check.is_empty() {
        md.push_str("## Delivery check\n\n");
        let rows = results.check.iter().map(|c| {
            let row = [
                &c.stack as &dyn std::fmt::Display,
                &c.subscribers,
                &c.events,
                &c.complete,
            ];
            let mut row: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            row.push(format!("{:?}", c.errors));
            row
        });
        table(
            &mut md,
            &[
                "stack",
                "subscribers",
                "events",
                "subscribers with every event, in order",
                "errors",
            ],
            rows,
        );
    }

    if !results.fanout.is_empty() {
        let _ = writeln!(
            md,
            "## Fan-out\n\nSubscribers are added in steps (connect, settle {} s, measure {} s); {} \
             rounds, each running every stack in turn on a fresh server; every figure is \
             the median of the rounds (lost: the largest). CPU is the server process's CPU \
             time in the window divided by the events the subscribers received in it; RSS \
             per connection is (RSS at the end of the window - RSS before any connection) / \
             subscribers.\n",
            secs(config.settle),
            secs(config.window),
            config.rounds
        );
        let rows = config.steps.iter().flat_map(|&n| {
            ORDER.into_iter().filter_map(move |stack| {
                let s = step_of(results, stack, n)?;
                Some(vec![
                    stack.into(),
                    n.to_string(),
                    format!("{:.0}", s.events_per_sec),
                    s.lost.to_string(),
                    opt(s.server_cpu_us_per_event, 2),
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    ms(s.latency.max_us),
                    opt(s.server_rss_per_conn_kib, 1),
                    format!(
                        "{:.2}",
                        s.client_cpu_ns as f64 / 1e9 / s.window_secs.max(1e-9)
                    ),
                ])
            })
        });
        let head = [
            "stack",
            "subscribers",
            "delivered/s",
            "lost",
            "server CPU/event (us)",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
            "RSS/conn (KiB)",
            "client CPU (cores)",
        ];
        table(&mut md, &head, rows);
        let pairs = [
            ("tower-sse", "axum"),
            ("tower-sse", "warp"),
            ("raw-floor", "axum"),
            ("hyper-floor", "axum"),
        ];
        let rows = config.steps.iter().map(|&n| {
            let cpu = |s| step_of(results, s, n).and_then(|s| s.server_cpu_us_per_event);
            let p99 = |s| step_of(results, s, n).map(|s| s.latency.p99_us as f64);
            let mut row = vec![n.to_string()];
            row.extend(pairs.iter().map(|(a, b)| opt(ratio(cpu(a), cpu(b)), 2)));
            row.extend(pairs.iter().map(|(a, b)| opt(ratio(p99(a), p99(b)), 2)));
            row
        });
        let head = [
            "subscribers",
            "CPU/event tower-sse / axum",
            "tower-sse / warp",
            "raw-floor / axum",
            "hyper-floor / axum",
            "p99 tower-sse / axum",
            "tower-sse / warp",
            "raw-floor / axum",
            "hyper-floor / axum",
        ];
        table(&mut md, &head, rows);
        md.push_str("![fan-out: p99 latency and CPU per event](fanout.svg)\n\n");
    }

    if !results.idle.is_empty() {
        md.push_str(
            "## Idle memory\n\nOpen event streams, nothing published (heartbeat every 15 s); \
             (RSS after connecting - RSS before) / connections.\n\n",
        );
        let rows = ORDER.into_iter().filter_map(|stack| {
            let s = results.idle.get(stack)?.steps.first()?;
            Some(vec![
                stack.into(),
                s.connections.to_string(),
                s.failed.to_string(),
                mib(s.server_rss_base_kib),
                mib(s.server_rss_kib),
                opt(s.server_rss_per_conn_kib, 2),
            ])
        });
        table(
            &mut md,
            &[
                "stack",
                "connections",
                "failed",
                "RSS before (MiB)",
                "RSS with connections (MiB)",
                "KiB per connection",
            ],
            rows,
        );
    }

    if !results.churn.is_empty() {
        let _ = writeln!(
            md,
            "## Churn\n\n{} client workers each loop: connect, GET the stream, read the response \
             head, close; for {} s, while 10 events/s are published; then, on the same server, \
             a second round. RSS after: {} s after each round; subscribers: what the server \
             counts then (0: every stream was cleaned up).\n",
            config.churn.0,
            secs(config.churn.1),
            secs(config.settle)
        );
        let rows = ORDER.into_iter().flat_map(|stack| {
            let reports = results.churn.get(stack).map_or(&[][..], Vec::as_slice);
            let first_base = reports
                .first()
                .and_then(|r| r.steps.first()?.server_rss_base_kib);
            reports
                .iter()
                .enumerate()
                .filter_map(move |(round, report)| {
                    let s = report.steps.first()?;
                    let delta = s
                        .server_rss_after_kib
                        .zip(first_base)
                        .map(|(a, b)| a as f64 - b as f64);
                    Some(vec![
                        stack.into(),
                        (round + 1).to_string(),
                        format!("{:.0}", s.cycles_per_sec),
                        opt(s.server_cpu_us_per_cycle, 1),
                        mib(s.server_rss_base_kib),
                        mib(s.server_rss_kib),
                        mib(s.server_rss_after_kib),
                        opt(delta, 0),
                        s.server_subscribers.map_or("-".into(), |n| n.to_string()),
                        format!("{:?}", report.errors),
                    ])
                })
        });
        let head = [
            "stack",
            "round",
            "connects+disconnects/s",
            "server CPU/cycle (us)",
            "RSS before (MiB)",
            "RSS at end (MiB)",
            "RSS after (MiB)",
            "after - before first round (KiB)",
            "subscribers after",
            "errors",
        ];
        table(&mut md, &head, rows);
    }

    md.push_str("## Cross-instance (Redis)\n\n");
    let latency_row = |label: &str, s: &Step| {
        let mut row = vec![
            label.to_string(),
            s.connections.to_string(),
            format!("{:.0}", s.events_per_sec),
            s.lost.to_string(),
        ];
        row.extend([s.latency.p50_us, s.latency.p99_us, s.latency.max_us].map(ms));
        row
    };
    match (
        results.redis.as_ref().and_then(|r| r.steps.first()),
        &results.redis_skipped,
    ) {
        (Some(s), _) => {
            let _ = writeln!(
                md,
                "Two tower-sse instances (separate processes, `RedisStorage`) on one \
                 `redis-server`, {} subscribers split over both, 10 events/s published on one \
                 instance only.\n",
                s.connections
            );
            let mut rows = vec![latency_row("2 instances + Redis", s)];
            rows.extend(
                step_of(results, "tower-sse", s.connections)
                    .map(|t| latency_row("1 instance, in memory (fan-out above)", t)),
            );
            table(
                &mut md,
                &[
                    "setup",
                    "subscribers",
                    "delivered/s",
                    "lost",
                    "p50 (ms)",
                    "p99 (ms)",
                    "max (ms)",
                ],
                rows,
            );
        }
        (None, why) => {
            let _ = writeln!(
                md,
                "Not run{}.\n",
                why.as_ref().map_or(String::new(), |w| format!(": {w}"))
            );
        }
    }

    if !results.high_rate.is_empty() {
        let _ = writeln!(
            md,
            "## High rate\n\nEvery subscriber reads every topic; events go to the topics in \
             turn. Per stack: server CPU and write system calls (`syscw` of `/proc/PID/io`) in \
             the window divided by the events the subscribers received in it, \
             publish-to-receive latency, (RSS at the end of the window - RSS before any \
             connection) / subscribers. Connect, settle {} s, measure {} s; the median of {} \
             round(s).\n",
            secs(config.settle),
            secs(config.window),
            config.high_rate_rounds
        );
        let rows = results.high_rate.iter().flat_map(|(shape, stacks)| {
            let mut labels: Vec<&String> = stacks.keys().collect();
            labels.sort_by_key(|l| ORDER.iter().position(|o| o == l).unwrap_or(ORDER.len()));
            labels.into_iter().flat_map(move |label| {
                stacks[label].steps.iter().map(move |s| {
                    let mut row = vec![
                        shape.clone(),
                        label.clone(),
                        s.connections.to_string(),
                        format!("{:.0}", s.events_per_sec),
                        s.lost.to_string(),
                    ];
                    row.extend([
                        opt(s.server_cpu_us_per_event, 2),
                        opt(s.server_syscw_per_event, 3),
                    ]);
                    row.extend([s.latency.p50_us, s.latency.p99_us, s.latency.max_us].map(ms));
                    row.push(opt(s.server_rss_per_conn_kib, 1));
                    row
                })
            })
        });
        let head = [
            "shape",
            "stack",
            "subscribers",
            "delivered/s",
            "lost",
            "server CPU/event (us)",
            "write syscalls/event",
            "p50 (ms)",
            "p99 (ms)",
            "max (ms)",
            "RSS/conn (KiB)",
        ];
        table(&mut md, &head, rows);
    }

    if !results.burst.is_empty() {
        let _ = writeln!(
            md,
            "## Burst\n\n{} ready events (~100 bytes each) streamed to one loopback client \
             (`burst` in `tools/bench`), median of {} runs.\n",
            config.burst.0, config.burst.1
        );
        let axum = results.burst.iter().find(|b| b.0 == "axum").map(|b| b.1);
        let rows = results.burst.iter().map(|(name, eps, mbs)| {
            vec![
                name.clone(),
                format!("{eps:.0}"),
                format!("{mbs:.1}"),
                format!("{}x", opt(ratio(Some(*eps), axum), 2)),
            ]
        });
        table(&mut md, &["stack", "events/s", "MB/s", "vs axum"], rows);
    }

    if !results.encode.is_empty() {
        md.push_str(
            "## Encode\n\nEvents per second from the caller's input to the frame's bytes, the \
             median of criterion's samples (`benches/encode.rs`). `tower-sse/body`: through the \
             body of `Sse`, one event per frame, the same path axum and warp are measured \
             through.\n\n",
        );
        let rows = results.encode.iter().map(|(case, benches)| {
            let get = |b: &str| benches.get(b).copied();
            let mut row = vec![case.clone()];
            row.extend(ENCODE_BENCHES.map(|b| opt(get(b), 0)));
            row.extend(
                [
                    ("tower-sse", "axum"),
                    ("tower-sse/body", "axum"),
                    ("tower-sse", "warp"),
                ]
                .map(|(a, b)| format!("{}x", opt(ratio(get(a), get(b)), 2))),
            );
            row
        });
        let head = [
            "case",
            "tower-sse",
            "tower-sse/body",
            "axum",
            "warp",
            "tower-sse / axum",
            "tower-sse/body / axum",
            "tower-sse / warp",
        ];
        table(&mut md, &head, rows);
    }
    md
}

/// Two panels: p99 latency (ms) and server CPU per event (us) against subscribers.
pub fn svg(results: &Results) -> Result<String, String> {
    let mut steps: Vec<usize> = results
        .fanout
        .values()
        .flat_map(|r| r.steps.iter().map(|s| s.connections))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let series = |metric: fn(&Step) -> Option<f64>| -> Vec<chart::Series<'_>> {
        let points = |report: &Report| {
            let at = |s: &Step| Some((steps.iter().position(|&n| n == s.connections)?, metric(s)?));
            report.steps.iter().filter_map(at).collect()
        };
        ORDER
            .iter()
            .filter_map(|&stack| Some((stack, points(results.fanout.get(stack)?))))
            .collect()
    };
    let title = format!(
        "Fan-out at 10 events/s: tower-sse vs axum vs warp ({})",
        results.meta.get("date").map_or("", String::as_str)
    );
    chart::svg(
        &title,
        &steps,
        &[
            (
                "p99 publish-to-receive latency (ms)",
                series(|s| Some(s.latency.p99_us as f64 / 1e3)),
            ),
            (
                "server CPU per delivered event (us)",
                series(|s| s.server_cpu_us_per_event),
            ),
        ],
    )
}
