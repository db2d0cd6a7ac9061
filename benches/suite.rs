//! The benchmark suite: fan-out, idle memory, churn, cross-instance (Redis), burst and
//! encode, tower-sse side by side with axum and warp, written to `benches/results/`
//! (`results.md`, `results.json`, `fanout.svg`).
//!
//! Run everything with `benches/run.sh` (encode first, then this driver); this driver
//! alone: `cargo bench --bench suite --all-features`. Options: `--smoke` (tiny sizes),
//! `--out DIR`, `--steps 1000,5000,15000`, `--window S`, `--idle N`, `--skip NAME,..`
//! (`check`, `fanout`, `idle`, `churn`, `redis`, `burst`, `encode`).
//!
//! Every server is a child process (this binary run as `suite server ...`, the code
//! of `benches/fanout_server.rs`); the load generator (`benches/loadgen.rs`) runs in
//! this process, so the server and the generator each have their own 20,000 files.
//! Burst runs in this process, as `benches/burst.rs` does. Encode is criterion's: its
//! estimates are read back from `target/criterion` (written by `cargo bench --bench
//! encode` just before, in `run.sh`).

#[path = "burst.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
pub mod burst;
#[path = "fanout_server.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
pub mod fanout_server;
#[path = "loadgen.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
pub mod loadgen;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanout_server::Stack;
use serde::Serialize;

// ---------------------------------------------------------------------------------------
// Configuration.

/// What the suite runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Subscribers at each fan-out step.
    pub steps: Vec<usize>,
    /// Fan-out measuring window per step.
    pub window: Duration,
    /// Fan-out rounds: each round runs every stack once, in turn; the report takes the
    /// median of the rounds, so a burst of load from elsewhere on a shared machine
    /// lands on one round of one stack rather than on one stack's only figure.
    pub rounds: usize,
    /// Wait after connecting before measuring.
    pub settle: Duration,
    /// New connections per second.
    pub connect_rate: f64,
    /// Events per second published.
    pub rate: f64,
    /// Subscribers and events of the delivery check (every subscriber gets every event).
    pub check: (usize, u64),
    /// Idle connections.
    pub idle: usize,
    /// Churn workers and duration.
    pub churn: (usize, Duration),
    /// Subscribers of the cross-instance run, split over two instances.
    pub redis: usize,
    /// Burst events and runs.
    pub burst: (u64, usize),
    /// Load generator threads.
    pub client_threads: usize,
    /// Where the results go.
    pub out: PathBuf,
    /// Sections to leave out.
    pub skip: Vec<String>,
    /// Print progress lines.
    pub verbose: bool,
    /// The command that ran the suite, for the report.
    pub command: String,
}

impl Config {
    /// The full suite.
    pub fn full(out: PathBuf) -> Config {
        Config {
            steps: vec![1_000, 5_000, 15_000],
            window: Duration::from_secs(6),
            rounds: 3,
            settle: Duration::from_secs(2),
            connect_rate: 2_500.0,
            rate: 10.0,
            check: (100, 20),
            idle: 15_000,
            churn: (64, Duration::from_secs(10)),
            redis: 1_000,
            burst: (burst::DEFAULT_EVENTS, 3),
            client_threads: 2,
            out,
            skip: Vec::new(),
            verbose: true,
            command: "benches/run.sh".to_string(),
        }
    }

    /// Tiny sizes, about a second per part: keeps the tools from rotting.
    pub fn smoke(out: PathBuf) -> Config {
        Config {
            steps: vec![20],
            window: Duration::from_millis(600),
            rounds: 1,
            settle: Duration::from_millis(200),
            connect_rate: 1_000.0,
            rate: 10.0,
            check: (20, 10),
            idle: 20,
            churn: (4, Duration::from_millis(500)),
            redis: 20,
            burst: (2_000, 1),
            client_threads: 1,
            out,
            skip: vec!["encode".to_string()],
            verbose: false,
            command: "smoke".to_string(),
        }
    }

    /// The configuration the command line asks for.
    pub fn from_args(args: &[String]) -> Result<Config, String> {
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/results");
        let smoke = args.iter().any(|a| a == "--smoke");
        let mut config = if smoke {
            Config::smoke(out)
        } else {
            Config::full(out)
        };
        config.command = std::iter::once("cargo bench --bench suite --all-features --")
            .chain(args.iter().map(String::as_str).filter(|a| *a != "--bench"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--out" => config.out = PathBuf::from(value()?),
                "--steps" => {
                    config.steps = value()?
                        .split(',')
                        .map(|s| {
                            s.replace('_', "")
                                .parse()
                                .map_err(|_| "--steps".to_string())
                        })
                        .collect::<Result<_, _>>()?
                }
                "--window" => {
                    config.window =
                        Duration::from_secs_f64(value()?.parse().map_err(|_| "--window: seconds")?)
                }
                "--idle" => config.idle = value()?.parse().map_err(|_| "--idle")?,
                "--rounds" => config.rounds = value()?.parse().map_err(|_| "--rounds")?,
                "--skip" => config.skip.extend(value()?.split(',').map(str::to_string)),
                "--command" => config.command = value()?,
                _ => {}
            }
        }
        Ok(config)
    }

    fn runs(&self, section: &str) -> bool {
        !self.skip.iter().any(|s| s == section)
    }
}

/// Builds the command that runs this suite's code in another role (`server ...`).
pub type Launcher<'a> = &'a dyn Fn(&[String]) -> Command;

// ---------------------------------------------------------------------------------------
// Child servers.

/// A server in a child process, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it serves event streams.
    pub sse: SocketAddr,
    /// Where it serves `/stats`.
    pub stats: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("sse", &self.sse).finish()
    }
}

impl Server {
    /// Starts `fanout_server` with `args` and waits for its addresses.
    pub fn start(launch: Launcher<'_>, args: &[String]) -> Result<Server, String> {
        let mut child = launch(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting a server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addrs = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addrs) = fanout_server::parse_listening(&line) {
                        break addrs;
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("server {args:?} exited before listening"));
                }
            }
        };
        // Keep reading its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server {
            child,
            sse: addrs.0,
            stats: addrs.1,
        })
    }

    fn url(&self) -> loadgen::Target {
        loadgen::Target::parse(&format!("http://{}/events", self.sse)).expect("url")
    }

    fn stats_url(&self) -> loadgen::Target {
        loadgen::Target::parse(&format!("http://{}/stats", self.stats)).expect("url")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_args(stack: Stack, rate: f64, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--stack".to_string(),
        stack.name().to_string(),
        "--rate".to_string(),
        rate.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A `redis-server` on a free loopback port, no persistence; killed when dropped.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("port", &self.port).finish()
    }
}

impl Redis {
    /// Starts one, if `redis-server` is installed.
    pub fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        let redis = Redis { child, port };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(redis);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err("redis-server did not start".to_string())
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Results.

/// Delivery check of one stack: every subscriber received every event, in order.
#[derive(Clone, Debug, Serialize)]
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
#[derive(Clone, Debug, Default, Serialize)]
pub struct Results {
    /// Machine, date, load, command.
    pub meta: BTreeMap<String, String>,
    /// Delivery checks.
    pub check: Vec<Check>,
    /// Fan-out reports by stack: the median of the rounds, step by step.
    pub fanout: BTreeMap<String, loadgen::Report>,
    /// Every fan-out round, by stack.
    pub fanout_rounds: BTreeMap<String, Vec<loadgen::Report>>,
    /// Idle memory reports by stack.
    pub idle: BTreeMap<String, loadgen::Report>,
    /// Churn reports by stack.
    pub churn: BTreeMap<String, Vec<loadgen::Report>>,
    /// Cross-instance run (two tower-sse instances on one Redis).
    pub redis: Option<loadgen::Report>,
    /// Why the cross-instance run did not happen, if it did not.
    pub redis_skipped: Option<String>,
    /// Burst medians: stack, events/s, MB/s.
    pub burst: Vec<(String, f64, f64)>,
    /// Encode: case -> bench -> events/s.
    pub encode: BTreeMap<String, BTreeMap<String, f64>>,
}

const ORDER: [&str; 3] = ["tower-sse", "axum", "warp"];
/// The reference floors, after the stacks in tables.
const FLOORS: [&str; 2] = ["hyper-floor", "raw-floor"];

// ---------------------------------------------------------------------------------------
// Sections.

fn say(config: &Config, text: &str) {
    if config.verbose {
        eprintln!("suite: {text}");
    }
}

fn check_delivery(config: &Config, launch: Launcher<'_>, stack: Stack) -> Result<Check, String> {
    let (subscribers, events) = config.check;
    let server = Server::start(
        launch,
        &server_args(
            stack,
            config.rate,
            &[
                "--events",
                &events.to_string(),
                "--start-after",
                &subscribers.to_string(),
            ],
        ),
    )?;
    let options = loadgen::Options {
        targets: vec![server.url()],
        steps: vec![subscribers],
        connect_rate: config.connect_rate,
        duration: Duration::from_secs(3),
        until_seq: Some(events),
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    let report = loadgen::run(&options)?;
    Ok(Check {
        stack: stack.name().to_string(),
        subscribers,
        events,
        complete: report.complete.unwrap_or(0),
        errors: report.errors,
    })
}

fn fanout(config: &Config, launch: Launcher<'_>, stack: Stack) -> Result<loadgen::Report, String> {
    let server = Server::start(launch, &server_args(stack, config.rate, &[]))?;
    let options = loadgen::Options {
        targets: vec![server.url()],
        steps: config.steps.clone(),
        connect_rate: config.connect_rate,
        settle: config.settle,
        duration: config.window,
        stats: vec![server.stats_url()],
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    loadgen::run(&options)
}

fn idle(config: &Config, launch: Launcher<'_>, stack: Stack) -> Result<loadgen::Report, String> {
    let server = Server::start(launch, &server_args(stack, 0.0, &[]))?;
    let options = loadgen::Options {
        targets: vec![server.url()],
        steps: vec![config.idle],
        connect_rate: config.connect_rate,
        settle: config.settle,
        duration: config.window.min(Duration::from_secs(2)),
        stats: vec![server.stats_url()],
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    loadgen::run(&options)
}

/// Two rounds of churn on one server: memory that is only kept by the allocator
/// for reuse stays level from the first round to the second; a leak grows.
fn churn(
    config: &Config,
    launch: Launcher<'_>,
    stack: Stack,
) -> Result<Vec<loadgen::Report>, String> {
    let server = Server::start(launch, &server_args(stack, config.rate, &[]))?;
    let options = loadgen::Options {
        targets: vec![server.url()],
        churn: Some(config.churn.0),
        duration: config.churn.1,
        settle: config.settle,
        stats: vec![server.stats_url()],
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    Ok(vec![loadgen::run(&options)?, loadgen::run(&options)?])
}

fn cross_instance(config: &Config, launch: Launcher<'_>) -> Result<loadgen::Report, String> {
    let redis = Redis::start()?;
    let url = redis.url();
    let a = Server::start(
        launch,
        &server_args(Stack::TowerSse, config.rate, &["--redis", &url]),
    )?;
    let b = Server::start(
        launch,
        &server_args(Stack::TowerSse, 0.0, &["--redis", &url]),
    )?;
    let options = loadgen::Options {
        targets: vec![a.url(), b.url()],
        steps: vec![config.redis],
        connect_rate: config.connect_rate,
        // A Redis-backed subscription starts once its instance's reader covers the
        // topic: give that a moment even at smoke size.
        settle: config.settle.max(Duration::from_secs(1)),
        duration: config.window,
        stats: vec![a.stats_url(), b.stats_url()],
        threads: config.client_threads,
        quiet: !config.verbose,
        ..loadgen::Options::default()
    };
    loadgen::run(&options)
}

/// The middle value (the upper one of two).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Step by step, the median of each figure over the rounds (losses and failures: the
/// largest).
pub fn median_report(reports: &[loadgen::Report]) -> loadgen::Report {
    let Some(first) = reports.first() else {
        return loadgen::Report::default();
    };
    let mut out = loadgen::Report {
        urls: first.urls.clone(),
        ..loadgen::Report::default()
    };
    for report in reports {
        for (kind, n) in &report.errors {
            *out.errors.entry(kind.clone()).or_default() += n;
        }
    }
    for (index, step) in first.steps.iter().enumerate() {
        let steps: Vec<&loadgen::Step> =
            reports.iter().filter_map(|r| r.steps.get(index)).collect();
        let m = |f: fn(&loadgen::Step) -> f64| median(steps.iter().map(|s| f(s)).collect());
        let mo = |f: fn(&loadgen::Step) -> Option<f64>| {
            let values: Vec<f64> = steps.iter().filter_map(|s| f(s)).collect();
            (!values.is_empty()).then(|| median(values))
        };
        let lat = |f: fn(&loadgen::Latency) -> u64| {
            median(steps.iter().map(|s| f(&s.latency) as f64).collect()) as u64
        };
        out.steps.push(loadgen::Step {
            connections: step.connections,
            connected: steps.iter().map(|s| s.connected).min().unwrap_or(0),
            failed: steps.iter().map(|s| s.failed).max().unwrap_or(0),
            open: steps.iter().map(|s| s.open).min().unwrap_or(0),
            connect_secs: m(|s| s.connect_secs),
            window_secs: m(|s| s.window_secs),
            events: m(|s| s.events as f64) as u64,
            events_per_sec: m(|s| s.events_per_sec),
            lost: steps.iter().map(|s| s.lost).max().unwrap_or(0),
            reordered: steps.iter().map(|s| s.reordered).max().unwrap_or(0),
            comments: m(|s| s.comments as f64) as u64,
            latency: loadgen::Latency {
                count: lat(|l| l.count),
                p50_us: lat(|l| l.p50_us),
                p90_us: lat(|l| l.p90_us),
                p99_us: lat(|l| l.p99_us),
                p999_us: lat(|l| l.p999_us),
                max_us: lat(|l| l.max_us),
            },
            server_cpu_ns: mo(|s| s.server_cpu_ns.map(|c| c as f64)).map(|c| c as u64),
            server_cpu_us_per_event: mo(|s| s.server_cpu_us_per_event),
            server_rss_base_kib: mo(|s| s.server_rss_base_kib.map(|k| k as f64)).map(|k| k as u64),
            server_rss_kib: mo(|s| s.server_rss_kib.map(|k| k as f64)).map(|k| k as u64),
            server_rss_per_conn_kib: mo(|s| s.server_rss_per_conn_kib),
            client_cpu_ns: m(|s| s.client_cpu_ns as f64) as u64,
            server_subscribers: step.server_subscribers,
            ..loadgen::Step::default()
        });
    }
    out
}

fn run_burst(config: &Config) -> Vec<(String, f64, f64)> {
    let rt = burst::runtime();
    let options = burst::Options {
        events: config.burst.0,
        runs: config.burst.1,
        stacks: burst::Stack::ALL.to_vec(),
    };
    let runs = burst::bench(&rt, &options, |run| {
        say(
            config,
            &format!(
                "burst {}: {:.0} events/s",
                run.stack.name(),
                run.events_per_sec()
            ),
        )
    });
    runs.iter()
        .map(|(stack, runs)| {
            let run = burst::median(runs);
            (
                stack.name().to_string(),
                run.events_per_sec(),
                run.mb_per_sec(),
            )
        })
        .collect()
}

/// The encode cases and the benches of each, as `benches/encode.rs` names them.
pub const ENCODE_CASES: [&str; 4] = [
    "position-json",
    "position-str",
    "multiline-5",
    "payload-64k",
];
/// The benches of each encode case.
pub const ENCODE_BENCHES: [&str; 4] = ["tower-sse", "tower-sse/body", "axum", "warp"];

fn read_encode() -> BTreeMap<String, BTreeMap<String, f64>> {
    // Where `benches/encode.rs` reads them back from, too.
    let dir = std::env::var_os("CRITERION_HOME").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(
                    || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
                    PathBuf::from,
                )
                .join("criterion")
        },
        PathBuf::from,
    );
    let mut all = BTreeMap::new();
    for case in ENCODE_CASES {
        let mut benches = BTreeMap::new();
        for bench in ENCODE_BENCHES {
            let path = dir
                .join(case)
                .join(bench.replace('/', "_"))
                .join("new/estimates.json");
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Some(ns) = value["median"]["point_estimate"].as_f64() {
                benches.insert(bench.to_string(), 1e9 / ns);
            }
        }
        if !benches.is_empty() {
            all.insert(case.to_string(), benches);
        }
    }
    all
}

// ---------------------------------------------------------------------------------------
// Machine and date.

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".to_string())
}

/// `YYYY-MM-DD HH:MM UTC` of a unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".to_string())
}

// ---------------------------------------------------------------------------------------
// Running.

/// Runs the suite and writes its files into `config.out`.
pub fn run(config: &Config, launch: Launcher<'_>) -> Result<Results, String> {
    let mut results = Results::default();
    let meta = &mut results.meta;
    meta.insert("date".into(), utc(now_secs()));
    meta.insert("load_before".into(), load_average());
    meta.insert("cpu".into(), cpu_model());
    meta.insert(
        "cores".into(),
        std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
    );
    meta.insert("commit".into(), git_commit());
    meta.insert("command".into(), config.command.clone());
    meta.insert(
        "open_files_limit".into(),
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            })
            .unwrap_or_else(|| "?".into()),
    );

    if config.runs("check") {
        for stack in Stack::ALL {
            say(config, &format!("delivery check: {}", stack.name()));
            results.check.push(check_delivery(config, launch, stack)?);
        }
    }
    if config.runs("fanout") {
        for round in 1..=config.rounds.max(1) {
            for stack in Stack::ALL.into_iter().chain(Stack::FLOORS) {
                say(
                    config,
                    &format!(
                        "fan-out round {round}/{}: {} {:?}",
                        config.rounds,
                        stack.name(),
                        config.steps
                    ),
                );
                let report = fanout(config, launch, stack)?;
                results
                    .fanout_rounds
                    .entry(stack.name().to_string())
                    .or_default()
                    .push(report);
            }
        }
        for (stack, reports) in &results.fanout_rounds {
            results.fanout.insert(stack.clone(), median_report(reports));
        }
    }
    if config.runs("idle") {
        for stack in Stack::ALL.into_iter().chain(Stack::FLOORS) {
            say(config, &format!("idle: {} x {}", stack.name(), config.idle));
            let report = idle(config, launch, stack)?;
            results.idle.insert(stack.name().to_string(), report);
        }
    }
    if config.runs("churn") {
        for stack in Stack::ALL {
            say(config, &format!("churn: {}", stack.name()));
            let reports = churn(config, launch, stack)?;
            results.churn.insert(stack.name().to_string(), reports);
        }
    }
    if config.runs("redis") {
        if cfg!(feature = "redis") {
            say(
                config,
                "cross-instance: two tower-sse instances on one Redis",
            );
            match cross_instance(config, launch) {
                Ok(report) => results.redis = Some(report),
                Err(err) => {
                    say(config, &format!("cross-instance skipped: {err}"));
                    results.redis_skipped = Some(err);
                }
            }
        } else {
            results.redis_skipped = Some("built without the `redis` feature".to_string());
        }
    }
    if config.runs("burst") {
        say(config, "burst");
        results.burst = run_burst(config);
    }
    if config.runs("encode") {
        results.encode = read_encode();
    }
    results.meta.insert("load_after".into(), load_average());

    std::fs::create_dir_all(&config.out).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    write(&config.out.join("results.json"), &json)?;
    write(&config.out.join("results.md"), &markdown(&results, config))?;
    write(&config.out.join("fanout.svg"), &svg(&results))?;
    Ok(results)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------
// Markdown.

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
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

fn step_of<'a>(results: &'a Results, stack: &str, n: usize) -> Option<&'a loadgen::Step> {
    results
        .fanout
        .get(stack)?
        .steps
        .iter()
        .find(|s| s.connections == n)
}

/// Target verdicts: (target, measured, met).
pub fn targets(results: &Results, config: &Config) -> Vec<(String, String, Option<bool>)> {
    let mut rows = Vec::new();
    for &n in &config.steps {
        let t = step_of(results, "tower-sse", n);
        let a = step_of(results, "axum", n);
        let cpu = ratio(
            t.and_then(|s| s.server_cpu_us_per_event),
            a.and_then(|s| s.server_cpu_us_per_event),
        );
        let floor = |metric: fn(&loadgen::Step) -> Option<f64>| {
            let f = ratio(
                step_of(results, "raw-floor", n).and_then(metric),
                a.and_then(metric),
            );
            f.map_or(String::new(), |f| format!(" (raw-socket floor: {f:.2}x)"))
        };
        rows.push((
            format!("fan-out CPU/event at {n} <= 1/3 of axum"),
            opt(cpu, 2) + "x of axum" + &floor(|s| s.server_cpu_us_per_event),
            cpu.map(|r| r <= 1.0 / 3.0),
        ));
        let p99 = ratio(
            t.map(|s| s.latency.p99_us as f64),
            a.map(|s| s.latency.p99_us as f64),
        );
        rows.push((
            format!("fan-out p99 at {n} <= 1/3 of axum"),
            opt(p99, 2) + "x of axum" + &floor(|s| Some(s.latency.p99_us as f64)),
            p99.map(|r| r <= 1.0 / 3.0),
        ));
    }
    let idle = results
        .idle
        .get("tower-sse")
        .and_then(|r| r.steps.first())
        .and_then(|s| s.server_rss_per_conn_kib);
    let hyper_idle = results
        .idle
        .get("hyper-floor")
        .and_then(|r| r.steps.first())
        .and_then(|s| s.server_rss_per_conn_kib);
    rows.push((
        "idle memory <= 8 KiB per connection".to_string(),
        opt(idle, 2)
            + " KiB"
            + &hyper_idle.map_or(String::new(), |h| {
                format!(" (hyper's connection alone, hyper-floor: {h:.2} KiB)")
            }),
        idle.map(|k| k <= 8.0),
    ));
    let burst = |name: &str| results.burst.iter().find(|b| b.0 == name).map(|b| b.1);
    let b = ratio(burst("tower-sse"), burst("axum"));
    rows.push((
        "burst >= 4x axum".to_string(),
        opt(b, 2) + "x",
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
    let _ = writeln!(md, "# tower-sse benchmark results\n");
    let _ = writeln!(
        md,
        "- date: {}; commit {}\n- machine: {} cores ({}), shared; open files per process: {}\n\
         - load average (1/5/15 min): {} before, {} after\n- command: `{}`\n",
        meta("date"),
        meta("commit"),
        meta("cores"),
        meta("cpu"),
        meta("open_files_limit"),
        meta("load_before"),
        meta("load_after"),
        meta("command"),
    );
    let _ = writeln!(
        md,
        "Servers and the load generator are separate processes on the same cores \
         (loopback). Every server: hyper's HTTP/1 connection, tokio with 2 workers, one \
         topic, 10 events/s of a 140-byte JSON payload carrying its publish time. Ratios \
         are taken within this one run.\n"
    );

    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | |\n|---|---|---|");
    for (target, measured, met) in targets(results, config) {
        let _ = writeln!(md, "| {target} | {measured} | {} |", verdict(met));
    }
    let _ = writeln!(md);

    if !results.check.is_empty() {
        let _ = writeln!(md, "## Delivery check\n");
        let _ = writeln!(
            md,
            "| stack | subscribers | events | subscribers with every event, in order | errors |\n|---|---|---|---|---|"
        );
        for c in &results.check {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:?} |",
                c.stack, c.subscribers, c.events, c.complete, c.errors
            );
        }
        let _ = writeln!(md);
    }

    if !results.fanout.is_empty() {
        let _ = writeln!(md, "## Fan-out\n");
        let _ = writeln!(
            md,
            "Subscribers are added in steps (connect, settle {} s, measure {} s); {} \
             rounds, each running every stack in turn on a fresh server; every figure is \
             the median of the rounds (lost: the largest). CPU \
             is the server process's CPU time in the window divided by the events the \
             subscribers received in it; RSS per connection is (RSS at the end of the \
             window - RSS before any connection) / subscribers.\n",
            secs(config.settle),
            secs(config.window),
            config.rounds
        );
        let _ = writeln!(
            md,
            "| stack | subscribers | delivered/s | lost | server CPU/event (us) | p50 (ms) | p99 (ms) | max (ms) | RSS/conn (KiB) | client CPU (cores) |\n\
             |---|---|---|---|---|---|---|---|---|---|"
        );
        for &n in &config.steps {
            for stack in ORDER.into_iter().chain(FLOORS) {
                let Some(s) = step_of(results, stack, n) else {
                    continue;
                };
                let _ = writeln!(
                    md,
                    "| {stack} | {n} | {:.0} | {} | {} | {} | {} | {} | {} | {:.2} |",
                    s.events_per_sec,
                    s.lost,
                    opt(s.server_cpu_us_per_event, 2),
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    ms(s.latency.max_us),
                    opt(s.server_rss_per_conn_kib, 1),
                    s.client_cpu_ns as f64 / 1e9 / s.window_secs.max(1e-9),
                );
            }
        }
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| subscribers | CPU/event tower-sse / axum | tower-sse / warp | raw-floor / axum | hyper-floor / axum | p99 tower-sse / axum | tower-sse / warp | raw-floor / axum | hyper-floor / axum |\n|---|---|---|---|---|---|---|---|---|"
        );
        for &n in &config.steps {
            let cpu = |s: &str| step_of(results, s, n).and_then(|s| s.server_cpu_us_per_event);
            let p99 = |s: &str| step_of(results, s, n).map(|s| s.latency.p99_us as f64);
            let _ = writeln!(
                md,
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
                opt(ratio(cpu("tower-sse"), cpu("axum")), 2),
                opt(ratio(cpu("tower-sse"), cpu("warp")), 2),
                opt(ratio(cpu("raw-floor"), cpu("axum")), 2),
                opt(ratio(cpu("hyper-floor"), cpu("axum")), 2),
                opt(ratio(p99("tower-sse"), p99("axum")), 2),
                opt(ratio(p99("tower-sse"), p99("warp")), 2),
                opt(ratio(p99("raw-floor"), p99("axum")), 2),
                opt(ratio(p99("hyper-floor"), p99("axum")), 2),
            );
        }
        let _ = writeln!(
            md,
            "\n![fan-out: p99 latency and CPU per event](fanout.svg)\n"
        );
    }

    if !results.idle.is_empty() {
        let _ = writeln!(md, "## Idle memory\n");
        let _ = writeln!(
            md,
            "Open event streams, nothing published (heartbeat every 15 s); (RSS after \
             connecting - RSS before) / connections.\n"
        );
        let _ = writeln!(
            md,
            "| stack | connections | failed | RSS before (MiB) | RSS with connections (MiB) | KiB per connection |\n|---|---|---|---|---|---|"
        );
        for stack in ORDER.into_iter().chain(FLOORS) {
            let Some(s) = results.idle.get(stack).and_then(|r| r.steps.first()) else {
                continue;
            };
            let _ = writeln!(
                md,
                "| {stack} | {} | {} | {} | {} | {} |",
                s.connections,
                s.failed,
                opt(s.server_rss_base_kib.map(|k| k as f64 / 1024.0), 1),
                opt(s.server_rss_kib.map(|k| k as f64 / 1024.0), 1),
                opt(s.server_rss_per_conn_kib, 2),
            );
        }
        let _ = writeln!(md);
    }

    if !results.churn.is_empty() {
        let _ = writeln!(md, "## Churn\n");
        let _ = writeln!(
            md,
            "{} client workers each loop: connect, GET the stream, read the response head, \
             close; for {} s, while 10 events/s are published; then, on the same server, \
             a second round. RSS after: {} s after each round; subscribers: what the \
             server counts then (0: every stream was cleaned up).\n",
            config.churn.0,
            secs(config.churn.1),
            secs(config.settle)
        );
        let _ = writeln!(
            md,
            "| stack | round | connects+disconnects/s | server CPU/cycle (us) | RSS before (MiB) | RSS at end (MiB) | RSS after (MiB) | after - before first round (KiB) | subscribers after | errors |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for stack in ORDER {
            let Some(reports) = results.churn.get(stack) else {
                continue;
            };
            let first_base = reports
                .first()
                .and_then(|r| r.steps.first())
                .and_then(|s| s.server_rss_base_kib);
            for (round, report) in reports.iter().enumerate() {
                let Some(s) = report.steps.first() else {
                    continue;
                };
                let mib = |k: Option<u64>| opt(k.map(|k| k as f64 / 1024.0), 1);
                let delta = s
                    .server_rss_after_kib
                    .zip(first_base)
                    .map(|(a, b)| a as f64 - b as f64);
                let _ = writeln!(
                    md,
                    "| {stack} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {:?} |",
                    round + 1,
                    s.cycles_per_sec,
                    opt(s.server_cpu_us_per_cycle, 1),
                    mib(s.server_rss_base_kib),
                    mib(s.server_rss_kib),
                    mib(s.server_rss_after_kib),
                    opt(delta, 0),
                    s.server_subscribers
                        .map_or("-".to_string(), |n| n.to_string()),
                    report.errors,
                );
            }
        }
        let _ = writeln!(md);
    }

    let _ = writeln!(md, "## Cross-instance (Redis)\n");
    match (&results.redis, &results.redis_skipped) {
        (Some(report), _) => {
            if let Some(s) = report.steps.first() {
                let single = step_of(results, "tower-sse", s.connections);
                let _ = writeln!(
                    md,
                    "Two tower-sse instances (separate processes, `RedisStorage`) on one \
                     `redis-server`, {} subscribers split over both, 10 events/s published on \
                     one instance only.\n",
                    s.connections
                );
                let _ = writeln!(
                    md,
                    "| setup | subscribers | delivered/s | lost | p50 (ms) | p99 (ms) | max (ms) |\n|---|---|---|---|---|---|---|"
                );
                let _ = writeln!(
                    md,
                    "| 2 instances + Redis | {} | {:.0} | {} | {} | {} | {} |",
                    s.connections,
                    s.events_per_sec,
                    s.lost,
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    ms(s.latency.max_us)
                );
                if let Some(t) = single {
                    let _ = writeln!(
                        md,
                        "| 1 instance, in memory (fan-out above) | {} | {:.0} | {} | {} | {} | {} |",
                        t.connections,
                        t.events_per_sec,
                        t.lost,
                        ms(t.latency.p50_us),
                        ms(t.latency.p99_us),
                        ms(t.latency.max_us)
                    );
                }
                let _ = writeln!(md);
            }
        }
        (None, Some(why)) => {
            let _ = writeln!(md, "Not run: {why}.\n");
        }
        (None, None) => {
            let _ = writeln!(md, "Not run.\n");
        }
    }

    if !results.burst.is_empty() {
        let _ = writeln!(md, "## Burst\n");
        let _ = writeln!(
            md,
            "{} ready events (~100 bytes each) streamed to one loopback client \
             (`benches/burst.rs`), median of {} runs.\n",
            config.burst.0, config.burst.1
        );
        let axum = results.burst.iter().find(|b| b.0 == "axum").map(|b| b.1);
        let _ = writeln!(
            md,
            "| stack | events/s | MB/s | vs axum |\n|---|---|---|---|"
        );
        for (name, eps, mbs) in &results.burst {
            let _ = writeln!(
                md,
                "| {name} | {eps:.0} | {mbs:.1} | {}x |",
                opt(ratio(Some(*eps), axum), 2)
            );
        }
        let _ = writeln!(md);
    }

    if !results.encode.is_empty() {
        let _ = writeln!(md, "## Encode\n");
        let _ = writeln!(
            md,
            "Events per second from the caller's input to the frame's bytes, the median of \
             criterion's samples (`benches/encode.rs`). `tower-sse/body`: through the body of \
             `Sse`, one event per frame, the same path axum and warp are measured through.\n"
        );
        let _ = writeln!(
            md,
            "| case | tower-sse | tower-sse/body | axum | warp | tower-sse / axum | tower-sse/body / axum | tower-sse / warp |\n|---|---|---|---|---|---|---|---|"
        );
        for (case, benches) in &results.encode {
            let get = |b: &str| benches.get(b).copied();
            let cell = |b: &str| opt(get(b), 0);
            let _ = writeln!(
                md,
                "| {case} | {} | {} | {} | {} | {}x | {}x | {}x |",
                cell("tower-sse"),
                cell("tower-sse/body"),
                cell("axum"),
                cell("warp"),
                opt(ratio(get("tower-sse"), get("axum")), 2),
                opt(ratio(get("tower-sse/body"), get("axum")), 2),
                opt(ratio(get("tower-sse"), get("warp")), 2),
            );
        }
        let _ = writeln!(md);
    }
    md
}

// ---------------------------------------------------------------------------------------
// SVG chart.

fn nice_max(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_tick(v: f64) -> String {
    if v == v.trunc() {
        format!("{v:.0}")
    } else if (v * 10.0) == (v * 10.0).trunc() {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Two panels: p99 latency (ms) and server CPU per event (us) against subscribers.
pub fn svg(results: &Results) -> String {
    let colors = [
        ("tower-sse", "#1b7f5f", ""),
        ("axum", "#d95f02", ""),
        ("warp", "#6a5acd", ""),
        ("hyper-floor", "#888888", " stroke-dasharray=\"6 4\""),
        ("raw-floor", "#bbbbbb", " stroke-dasharray=\"2 3\""),
    ];
    let mut steps: Vec<usize> = results
        .fanout
        .values()
        .flat_map(|r| r.steps.iter().map(|s| s.connections))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let (width, height) = (900.0, 380.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Fan-out at 10 events/s: \
         tower-sse vs axum vs warp ({})</text>",
        width / 2.0,
        results.meta.get("date").cloned().unwrap_or_default()
    );
    type Metric = fn(&loadgen::Step) -> Option<f64>;
    let panels: [(&str, Metric); 2] = [
        ("p99 publish-to-receive latency (ms)", |s| {
            Some(s.latency.p99_us as f64 / 1e3)
        }),
        ("server CPU per delivered event (us)", |s| {
            s.server_cpu_us_per_event
        }),
    ];
    for (panel, (title, metric)) in panels.iter().enumerate() {
        let left = 70.0 + panel as f64 * 440.0;
        let (top, plot_w, plot_h) = (60.0, 340.0, 240.0);
        let values: Vec<f64> = results
            .fanout
            .values()
            .flat_map(|r| r.steps.iter().filter_map(metric))
            .collect();
        let (ymax, ystep) = nice_max(values.iter().cloned().fold(0.0, f64::max));
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{title}</text>",
            left + plot_w / 2.0,
            top - 12.0
        );
        // Grid and y ticks.
        let mut tick = 0.0;
        while tick <= ymax + ystep / 2.0 {
            let y = top + plot_h - tick / ymax * plot_h;
            let _ = writeln!(
                out,
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                left + plot_w,
                left - 6.0,
                y + 4.0,
                fmt_tick(tick)
            );
            tick += ystep;
        }
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>",
            top + plot_h,
            top + plot_h,
            left + plot_w,
            top + plot_h
        );
        // X positions: evenly spaced steps.
        let x_of = |i: usize| {
            if steps.len() <= 1 {
                left + plot_w / 2.0
            } else {
                left + 30.0 + (plot_w - 60.0) * i as f64 / (steps.len() - 1) as f64
            }
        };
        for (i, n) in steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{n}</text>",
                x_of(i),
                top + plot_h + 18.0
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">subscribers</text>",
            left + plot_w / 2.0,
            top + plot_h + 36.0
        );
        for (name, color, dash) in colors {
            let Some(report) = results.fanout.get(name) else {
                continue;
            };
            let points: Vec<(f64, f64, f64)> = steps
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let step = report.steps.iter().find(|s| s.connections == *n)?;
                    let v = metric(step)?;
                    Some((x_of(i), top + plot_h - v / ymax * plot_h, v))
                })
                .collect();
            let path: Vec<String> = points
                .iter()
                .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
                path.join(" ")
            );
            for (x, y, v) in &points {
                let _ = writeln!(
                    out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{color}\">\
                     <title>{name}: {v:.2}</title></circle>"
                );
            }
        }
    }
    // Legend.
    for (i, (name, color, _)) in colors.iter().enumerate() {
        let x = width / 2.0 - 260.0 + i as f64 * 110.0;
        let y = height - 18.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{y:.1}\">{name}</text>",
            y - 5.0,
            x + 20.0
        );
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------------------
// Entry points.

/// Runs one role in this process: `server ARGS` or `loadgen ARGS`.
pub fn child_main(args: Vec<String>) {
    let role = args.first().cloned().unwrap_or_default();
    let rest = args.into_iter().skip(1);
    match role.as_str() {
        "server" => {
            let result = fanout_server::Options::from_args(rest)
                .and_then(|o| fanout_server::serve_forever(&o));
            if let Err(err) = result {
                eprintln!("server: {err}");
                std::process::exit(1);
            }
        }
        other => {
            eprintln!("unknown role {other:?}");
            std::process::exit(2);
        }
    }
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "server") {
        child_main(args);
        return;
    }
    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("suite: {err}");
            std::process::exit(2);
        }
    };
    let exe = std::env::current_exe().expect("current exe");
    let launch = move |args: &[String]| {
        let mut command = Command::new(&exe);
        command.arg("server").args(args);
        command
    };
    match run(&config, &launch) {
        Ok(results) => {
            println!("{}", markdown(&results, &config));
            println!("written to {}", config.out.display());
        }
        Err(err) => {
            eprintln!("suite: {err}");
            std::process::exit(1);
        }
    }
}
