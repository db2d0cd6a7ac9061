//! The sections that run fan-out servers and the load generator: fan-out, churn, two
//! instances on one Redis, high rate with write batching, and compression.

use std::time::Duration;

use super::child::{Redis, Server};
use super::config::Config;
use crate::codec::Codec;
use crate::loadgen::{self, Options};
use crate::results::{Report, Results, Run, Step};

/// Starts `fanout-server` with `args`; the load generator's options for its streams.
fn start(config: &Config, args: &[&str]) -> Result<(Server, Options), String> {
    let server = Server::start(&config.tool("fanout-server"), args)?;
    let mut options = Options::new(vec![server.events.clone()]);
    (options.settle, options.duration) = (config.settle, config.args.window);
    (options.pids, options.quiet) = (vec![server.pid()], config.args.smoke);
    options.control = Some(server.control("/stats"));
    Ok((server, options))
}

/// A server with `args`, the load generator at `steps`: its report, or, if the run
/// failed as a whole, one with the error.
fn measure(config: &Config, args: &[&str], steps: &[usize], codec: Option<Codec>) -> Report {
    let report = start(config, args).and_then(|(_server, mut options)| {
        (options.steps, options.accept_encoding) = (steps.to_vec(), codec);
        loadgen::run(&options)
    });
    report.unwrap_or_else(|error| {
        eprintln!("suite: {args:?}: {error}");
        Report { errors: [(format!("run failed: {error}"), 1)].into(), ..Report::default() }
    })
}

/// Step by step, the round of the median server CPU per event (its other figures with
/// it), but the most events lost and streams failed of any round.
fn median(reports: &[Report]) -> Report {
    let mut median = reports[0].clone();
    for (i, step) in median.steps.iter_mut().enumerate() {
        let mut all: Vec<&Step> = reports.iter().filter_map(|r| r.steps.get(i)).collect();
        all.sort_by(|a, b| {
            a.server_cpu_us_per_event.partial_cmp(&b.server_cpu_us_per_event).unwrap()
        });
        let (lost, failed) = (all.iter().map(|s| s.lost).max(), all.iter().map(|s| s.failed).max());
        *step = all[all.len() / 2].clone();
        (step.lost, step.failed) = (lost.unwrap_or(0), failed.unwrap_or(0));
    }
    median.errors = reports.iter().flat_map(|r| r.errors.clone()).collect();
    median
}

fn run_of(label: impl Into<String>, stack: &str, report: Report) -> Run {
    Run { label: label.into(), stack: stack.into(), report, ..Run::default() }
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
                reports.push(measure(config, &["--stack", stack], &config.args.steps, None));
            }
        }
        let runs = STACKS.iter().zip(rounds).map(|(s, r)| run_of(*s, s, median(&r)));
        results.fanout = runs.collect();
    }
    if config.runs("churn") {
        for stack in &STACKS[..3] {
            config.say(&format!("churn: {stack}"));
            let (_server, mut options) = start(config, &["--stack", stack])?;
            (options.churn, options.duration) = (Some(config.churn.0), config.churn.1);
            for round in ["round 1", "round 2"] {
                let run = run_of(*stack, stack, loadgen::run(&options)?);
                results.churn.push(Run { shape: Some(round.into()), ..run });
            }
        }
    }
    if config.runs("redis") {
        config.say("two tower-sse instances on one Redis");
        let error = |e| Report { errors: [(e, 1)].into(), ..Report::default() };
        let report = redis(config).unwrap_or_else(error);
        results.redis.push(run_of("2 instances + Redis", STACKS[0], report));
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
    (options.steps, _) = (vec![config.redis], options.targets.push(b.events.clone()));
    // A subscription on Redis starts once its instance reads the topic: a moment more.
    (options.settle, _) = (config.settle.max(Duration::from_secs(1)), options.pids.push(b.pid()));
    loadgen::run(&options)
}

/// One topic at 200 events/s, and the aircraft example's shape (320 topics at 1 event/s
/// each), every subscriber on all: every stack, then tower-sse with each write delay.
fn high_rate(config: &Config, results: &mut Results) {
    let topics = config.aircraft.0.to_string();
    let shapes = [
        ("200 events/s".to_string(), "1", "200"),
        (format!("{topics} topics x 1 event/s"), &topics[..], "1"),
    ];
    for (shape, topics, rate) in shapes {
        let delays = [None, Some(0), Some(5), Some(20), Some(50)]
            .map(|d: Option<u64>| d.map(|d| d.to_string()));
        let runs = STACKS
            .iter()
            .map(|s| (*s, None))
            .chain(delays[2..].iter().map(|d| ("tower-sse", d.as_deref())));
        for (stack, delay) in runs {
            let label =
                delay.map_or(stack.to_string(), |d| format!("tower-sse (write delay {d} ms)"));
            config.say(&format!("high rate, {shape}: {label}"));
            let mut args = vec!["--stack", stack, "--topics", topics, "--rate", rate];
            args.extend(delay.iter().flat_map(|d| ["--write-delay-ms", d]));
            let report = measure(config, &args, &config.args.high_rate_steps, None);
            let delay_ms = delay.map_or((stack == "tower-sse").then_some(0), |d| d.parse().ok());
            let run = Run { shape: Some(shape.clone()), delay_ms, ..run_of(label, stack, report) };
            results.high_rate.push(run);
        }
    }
}

/// tower-sse, identity and each codec, the aircraft feed (published together, as the
/// example's tick does) and the sensors feed, without and with a 20 ms write delay.
fn compression(config: &Config, results: &mut Results) {
    let (topics, rate) = (config.aircraft.0.to_string(), config.aircraft.1.to_string());
    let aircraft = ["--feed", "aircraft", "--burst", "--topics", &topics, "--rate", &rate];
    let shapes = [
        (format!("aircraft: {topics} topics x {rate} event/s, together"), &aircraft[..]),
        (
            "sensors: 6 topics x 1 event/s".into(),
            &["--feed", "sensors", "--topics", "6", "--rate", "1"],
        ),
    ];
    for (shape, feed) in shapes {
        for delay in ["0", "20"] {
            for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
                let coding = codec.map_or("identity", Codec::token);
                config.say(&format!("compression, {shape}, write delay {delay} ms: {coding}"));
                let mut args = [feed, &["--write-delay-ms", delay]].concat();
                args.extend(codec.iter().flat_map(|c| ["--compression", c.token()]));
                let report = measure(config, &args, &[config.compression], codec);
                let (shape, delay_ms) = (Some(shape.clone()), delay.parse().ok());
                let run = run_of(coding, "tower-sse", report);
                results.compression.push(Run { shape, delay_ms, ..run });
            }
        }
    }
}
