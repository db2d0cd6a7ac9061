//! The sections that run fan-out servers and the load generator: fan-out, churn, two
//! instances on one Redis, high rate with write batching, and compression.

use std::time::Duration;

use clap::Parser;

use super::child::{Redis, Server};
use super::config::Config;
use crate::codec::Codec;
use crate::loadgen::{self, Options};
use crate::results::{Report, Results, Run, Step};

/// Starts `fanout-server` with `args`; the load generator's options for its streams.
fn start(config: &Config, args: &[&str]) -> Result<(Server, Options), String> {
    let server = Server::start(&config.tool("fanout-server"), args)?;
    let mut options = Options::parse_from(["loadgen", "--url", &server.events.to_string()]);
    (options.settle, options.duration) = (config.settle, config.args.window);
    (options.pids, options.quiet) = (vec![server.pid()], config.args.smoke);
    options.control = Some(server.control("/stats"));
    Ok((server, options))
}

/// The report of a run that failed as a whole: the error.
fn failed(error: String) -> Report {
    eprintln!("suite: {error}");
    let mut report = Report::default();
    report.errors.insert(format!("run failed: {error}"), 1);
    report
}

/// A server with `args`, the load generator at `steps`: its report, or, if the run
/// failed as a whole, one with the error.
fn measure(config: &Config, args: &[&str], steps: &[usize], codec: Option<Codec>) -> Report {
    let report = start(config, args).and_then(|(_server, mut options)| {
        (options.steps, options.accept_encoding) = (steps.to_vec(), codec);
        loadgen::run(&options)
    });
    report.unwrap_or_else(|error| failed(format!("{args:?}: {error}")))
}

/// Step by step, the round of the median server CPU per event (its other figures with
/// it), but the most events lost and streams failed of any round.
fn median(reports: &[Report]) -> Report {
    let mut median = reports[0].clone();
    for (i, step) in median.steps.iter_mut().enumerate() {
        let mut all: Vec<&Step> = reports.iter().filter_map(|r| r.steps.get(i)).collect();
        let cpu = |s: &&Step| s.server_cpu_us_per_event.unwrap_or(-1.0);
        all.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
        let lost = all.iter().map(|s| s.lost).max().unwrap_or(0);
        let failed = all.iter().map(|s| s.failed).max().unwrap_or(0);
        *step = all[all.len() / 2].clone();
        (step.lost, step.failed) = (lost, failed);
    }
    median.errors = reports.iter().flat_map(|r| r.errors.clone()).collect();
    median
}

/// A run of `stack`, labelled, with the feed (`shape`) and write delay it ran with.
fn run_of(label: &str, stack: &str, shape: Option<&str>, delay: Option<u64>, r: Report) -> Run {
    let (label, stack, shape) = (label.into(), stack.into(), shape.map(str::to_string));
    Run {
        label,
        stack,
        shape,
        delay_ms: delay,
        report: r,
    }
}

/// The stacks: every one, floors last.
const STACKS: [&str; 5] = ["tower-sse", "axum", "warp", "hyper-floor", "raw-floor"];

/// Every section here that `config` runs.
pub(super) fn run(config: &Config, results: &mut Results) -> Result<(), String> {
    if config.runs("fanout") {
        // One topic, 10 events/s; each stack once a round, in turn.
        let mut rounds = vec![Vec::new(); STACKS.len()];
        for round in 1..=config.args.rounds {
            for (stack, reports) in STACKS.iter().zip(&mut rounds) {
                config.say(&format!("fan-out, round {round}: {stack}"));
                let args = ["--stack", stack];
                reports.push(measure(config, &args, &config.args.steps, None));
            }
        }
        let runs = STACKS.iter().zip(rounds);
        results.fanout = runs
            .map(|(s, r)| run_of(s, s, None, None, median(&r)))
            .collect();
    }
    if config.runs("churn") {
        for stack in &STACKS[..3] {
            config.say(&format!("churn: {stack}"));
            let (_server, mut options) = start(config, &["--stack", stack])?;
            (options.churn, options.duration) = (Some(config.churn.0), config.churn.1);
            for round in ["round 1", "round 2"] {
                let report = loadgen::run(&options)?;
                results
                    .churn
                    .push(run_of(stack, stack, Some(round), None, report));
            }
        }
    }
    if config.runs("redis") {
        config.say("two tower-sse instances on one Redis");
        let report = redis(config).unwrap_or_else(failed);
        let label = "2 instances + Redis";
        results
            .redis
            .push(run_of(label, "tower-sse", None, None, report));
    }
    if config.runs("high-rate") {
        high_rate(config, results);
    }
    if config.runs("compression") {
        compression(config, results);
    }
    Ok(())
}

/// Two tower-sse instances on one `redis-server`, the subscribers split over both, 10
/// events/s published on one.
fn redis(config: &Config) -> Result<Report, String> {
    let redis = Redis::start()?;
    let (_a, mut options) = start(config, &["--redis", &redis.url])?;
    let (b, _) = start(config, &["--redis", &redis.url, "--rate", "0"])?;
    (options.steps, options.pids) = (vec![config.redis], vec![options.pids[0], b.pid()]);
    options.targets.push(b.events.clone());
    // A subscription on Redis starts once its instance reads the topic: a moment more.
    options.settle = config.settle.max(Duration::from_secs(1));
    loadgen::run(&options)
}

/// One topic at 200 events/s, and the aircraft example's shape (320 topics at 1 event/s
/// each), every subscriber on all: every stack, then tower-sse with each write delay.
fn high_rate(config: &Config, results: &mut Results) {
    let topics = config.aircraft.0.to_string();
    let aircraft = format!("{topics} topics x 1 event/s");
    let shapes = [
        ("200 events/s", "1", "200"),
        (&aircraft[..], &topics[..], "1"),
    ];
    for (shape, topics, rate) in shapes {
        let delays = [5, 20, 50].map(Some);
        let runs = STACKS.iter().map(|s| (*s, None));
        for (stack, delay) in runs.chain(delays.map(|d| ("tower-sse", d))) {
            let label = delay.map_or(stack.into(), |d| format!("tower-sse (write delay {d} ms)"));
            config.say(&format!("high rate, {shape}: {label}"));
            let delay_ms = delay.map(|d| d.to_string());
            let mut args = vec!["--stack", stack, "--topics", topics, "--rate", rate];
            args.extend(delay_ms.iter().flat_map(|d| ["--write-delay-ms", d]));
            let report = measure(config, &args, &config.args.high_rate_steps, None);
            // tower-sse's own row is the one without a delay: 0.
            let delay = delay.or((stack == "tower-sse").then_some(0));
            let run = run_of(&label, stack, Some(shape), delay, report);
            results.high_rate.push(run);
        }
    }
}

/// tower-sse, identity and each codec, the aircraft feed (published together, as the
/// example's tick does) and the sensors feed, without and with a 20 ms write delay.
fn compression(config: &Config, results: &mut Results) {
    let (topics, rate) = (config.aircraft.0.to_string(), config.aircraft.1.to_string());
    let aircraft = [
        "--feed", "aircraft", "--burst", "--topics", &topics, "--rate", &rate,
    ];
    let sensors = ["--feed", "sensors", "--topics", "6", "--rate", "1"];
    let shapes = [
        (
            format!("aircraft: {topics} topics x {rate} event/s, together"),
            &aircraft[..],
        ),
        ("sensors: 6 topics x 1 event/s".into(), &sensors[..]),
    ];
    for (shape, feed) in shapes {
        for delay in [0, 20] {
            for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
                let coding = codec.map_or("identity", Codec::token);
                let what = format!("compression, {shape}, write delay {delay} ms: {coding}");
                config.say(&what);
                let delay_ms = delay.to_string();
                let mut args = [feed, &["--write-delay-ms", &delay_ms]].concat();
                args.extend(codec.iter().flat_map(|c| ["--compression", c.token()]));
                let report = measure(config, &args, &[config.compression], codec);
                let run = run_of(coding, "tower-sse", Some(&shape), Some(delay), report);
                results.compression.push(run);
            }
        }
    }
}
