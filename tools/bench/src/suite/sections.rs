//! The sections that run a fan-out server and the load generator: delivery check,
//! fan-out, churn, two instances on one Redis, high rate (with write batching) and
//! compression; and burst.

use serde_json::Value;

use super::Config;
use super::child::{Redis, Server};
use crate::burst;
use crate::codec::Codec;
use crate::loadgen::{self, Report};
use crate::results::{Burst, Check, Churn, Results, Run};
use crate::server::{Stack, events_path};

/// A fan-out server's settings.
#[derive(Clone, Debug)]
struct Setup {
    stack: Stack,
    rate: f64,
    topics: u64,
    extra: Vec<String>,
}

impl Setup {
    fn new(stack: Stack, rate: f64, topics: u64, extra: &[&str]) -> Setup {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Setup {
            stack,
            rate,
            topics,
            extra,
        }
    }

    fn args(&self) -> Vec<String> {
        let args = [
            "--stack",
            self.stack.name(),
            "--rate",
            &self.rate.to_string(),
        ];
        let topics = ["--topics".to_string(), self.topics.to_string()];
        args.iter()
            .map(|s| s.to_string())
            .chain(topics)
            .chain(self.extra.clone())
            .collect()
    }
}

/// Starts the server of `setup`, runs the load generator against it.
fn measure(
    config: &Config,
    setup: &Setup,
    steps: &[usize],
    tweak: impl FnOnce(&mut loadgen::Options),
) -> Result<Report, String> {
    let server = Server::start(&config.tool("fanout-server"), &setup.args())?;
    let mut options =
        loadgen::Options::new(vec![server.url(&events_path(setup.stack, setup.topics))]);
    options.steps = steps.to_vec();
    options.connect_rate = config.connect_rate;
    options.settle = config.settle;
    options.duration = config.window;
    options.pids = vec![server.pid];
    options.controls = vec![server.control.clone()];
    options.quiet = config.smoke;
    tweak(&mut options);
    loadgen::run(&options)
}

/// A run that failed as a whole is reported with its error, and the section goes on.
fn tolerate(result: Result<Report, String>) -> Report {
    result.unwrap_or_else(|error| {
        eprintln!("suite: run failed: {error}");
        Report {
            errors: [(format!("run failed: {error}"), 1)].into(),
            ..Report::default()
        }
    })
}

/// Step by step, the median of each figure over the rounds; lost and failed: the
/// largest; connected: the fewest.
fn median(reports: &[Report]) -> Report {
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
        let mut numbers: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
        numbers.sort_by(f64::total_cmp);
        let pick = match key {
            "lost" | "reordered" | "failed" => numbers.last(),
            "connected" => numbers.first(),
            _ => numbers.get(numbers.len() / 2),
        };
        match (pick, values.first()) {
            (Some(&n), Some(v)) if v.is_u64() => Value::from(n as u64),
            (Some(&n), _) => Value::from(n),
            (None, first) => first.map_or(Value::Null, |v| (*v).clone()),
        }
    }
    let values: Vec<Value> = reports
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let all: Vec<&Value> = values.iter().collect();
    let mut report: Report = serde_json::from_value(combine(&all, "")).unwrap_or_default();
    report.errors = reports.iter().flat_map(|r| r.errors.clone()).collect();
    report
}

fn run_of(label: String, stack: Stack, report: Report) -> Run {
    Run {
        label,
        stack: stack.name().into(),
        report,
        ..Run::default()
    }
}

/// Every section here that `config` runs.
pub(super) fn run(config: &Config, results: &mut Results) -> Result<(), String> {
    if config.runs("check") {
        check(config, results)?;
    }
    if config.runs("fanout") {
        for stack in Stack::ALL {
            let mut rounds = Vec::new();
            for round in 1..=config.rounds {
                config.say(&format!(
                    "fan-out {}, round {round}: {:?}",
                    stack.name(),
                    config.steps
                ));
                let setup = Setup::new(stack, 10.0, 1, &[]);
                rounds.push(measure(config, &setup, &config.steps, |_| {})?);
            }
            results
                .fanout
                .push(run_of(stack.name().into(), stack, median(&rounds)));
        }
    }
    if config.runs("churn") {
        for stack in [Stack::TowerSse, Stack::Axum, Stack::Warp] {
            config.say(&format!("churn: {}", stack.name()));
            let server = Server::start(
                &config.tool("fanout-server"),
                &Setup::new(stack, 10.0, 1, &[]).args(),
            )?;
            let mut options = loadgen::Options::new(vec![server.url(&events_path(stack, 1))]);
            (options.churn, options.duration, options.settle) =
                (Some(config.churn.0), config.churn.1, config.settle);
            (options.pids, options.controls, options.quiet) =
                (vec![server.pid], vec![server.control.clone()], config.smoke);
            let rounds = vec![loadgen::run(&options)?, loadgen::run(&options)?];
            results.churn.push(Churn {
                stack: stack.name().into(),
                rounds,
            });
        }
    }
    if config.runs("redis") {
        config.say("two tower-sse instances on one Redis");
        match redis(config) {
            Ok(report) => {
                results.redis = Some(run_of(
                    "2 instances + Redis".into(),
                    Stack::TowerSse,
                    report,
                ))
            }
            Err(err) => results.redis_skipped = Some(err),
        }
    }
    if config.runs("high-rate") {
        high_rate(config, results)?;
    }
    if config.runs("compression") {
        compression(config, results);
    }
    if config.runs("burst") {
        config.say("burst");
        let (events, runs) = config.burst;
        for (stack, run) in burst::bench(&burst::Stack::ALL, events, runs)? {
            let (events_per_sec, mb_per_sec) = (run.events_per_sec(), run.mb_per_sec());
            results.burst.push(Burst {
                stack: stack.name().into(),
                events,
                events_per_sec,
                mb_per_sec,
            });
        }
    }
    Ok(())
}

/// Every stack; then tower-sse with a 20 ms write delay, each codec, and both.
fn check(config: &Config, results: &mut Results) -> Result<(), String> {
    let (subscribers, events) = config.check;
    let mut cases: Vec<(String, Stack, Vec<String>, Option<Codec>)> = Stack::ALL
        .iter()
        .map(|&s| (s.name().to_string(), s, Vec::new(), None))
        .collect();
    for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
        for delay in [None, Some(20)] {
            if codec.is_none() && delay.is_none() {
                continue;
            }
            let (mut label, mut extra) = ("tower-sse".to_string(), Vec::new());
            if let Some(codec) = codec {
                label.push_str(&format!(", {}", codec.token()));
                extra.extend(["--compression".into(), codec.token().into()]);
            }
            if let Some(delay) = delay {
                label.push_str(&format!(", write delay {delay} ms"));
                extra.extend(["--write-delay-ms".into(), delay.to_string()]);
            }
            cases.push((label, Stack::TowerSse, extra, codec));
        }
    }
    for (label, stack, mut extra, codec) in cases {
        config.say(&format!("delivery check: {label}"));
        extra.extend(["--events".into(), events.to_string(), "--paused".into()]);
        let setup = Setup {
            stack,
            rate: 100.0,
            topics: 1,
            extra,
        };
        let report = measure(config, &setup, &[subscribers], |o| {
            (o.until_seq, o.accept_encoding) = (Some(events), codec);
        })?;
        let complete = report.complete.unwrap_or(0);
        results.check.push(Check {
            label,
            subscribers,
            events,
            complete,
            errors: report.errors,
        });
    }
    Ok(())
}

fn redis(config: &Config) -> Result<Report, String> {
    let redis = Redis::start()?;
    let program = config.tool("fanout-server");
    let a = Server::start(
        &program,
        &Setup::new(Stack::TowerSse, 10.0, 1, &["--redis", &redis.url]).args(),
    )?;
    let b = Server::start(
        &program,
        &Setup::new(Stack::TowerSse, 0.0, 1, &["--redis", &redis.url]).args(),
    )?;
    let path = events_path(Stack::TowerSse, 1);
    let mut options = loadgen::Options::new(vec![a.url(&path), b.url(&path)]);
    options.steps = vec![config.redis];
    (options.connect_rate, options.duration) = (config.connect_rate, config.window);
    // A subscription on Redis starts once its instance reads the topic: a moment more.
    options.settle = config.settle.max(std::time::Duration::from_secs(1));
    (options.pids, options.quiet) = (vec![a.pid, b.pid], config.smoke);
    loadgen::run(&options)
}

/// One topic at 200 events/s, and 320 topics at 1 event/s each (the aircraft example's
/// shape), every subscriber on all: every stack, then tower-sse with each write delay.
fn high_rate(config: &Config, results: &mut Results) -> Result<(), String> {
    let shapes = [
        ("200 events/s".to_string(), 1, 200.0),
        (
            format!("{} topics x 1 event/s", config.aircraft.0),
            config.aircraft.0,
            1.0,
        ),
    ];
    for (shape, topics, rate) in shapes {
        let stacks = Stack::ALL.map(|s| (s.name().to_string(), s, None));
        let delays = config.write_delays.iter().map(|&d| {
            (
                format!("tower-sse (write delay {d} ms)"),
                Stack::TowerSse,
                Some(d),
            )
        });
        for (label, stack, delay) in stacks.into_iter().chain(delays) {
            config.say(&format!("high rate, {shape}: {label}"));
            let delay_arg = delay.map(|d| d.to_string());
            let extra: Vec<&str> = delay_arg
                .iter()
                .flat_map(|d| ["--write-delay-ms", d])
                .collect();
            let report = measure(
                config,
                &Setup::new(stack, rate, topics, &extra),
                &config.high_rate_steps,
                |_| {},
            )?;
            let delay_ms = delay.or((stack == Stack::TowerSse).then_some(0));
            results.high_rate.push(Run {
                shape: Some(shape.clone()),
                delay_ms,
                ..run_of(label, stack, report)
            });
        }
    }
    Ok(())
}

/// tower-sse, identity and each codec, the aircraft feed (published together, as the
/// example's tick does) and the sensors feed, with and without a 20 ms write delay.
fn compression(config: &Config, results: &mut Results) {
    let (aircraft, rate) = config.aircraft;
    let feeds = [
        (
            format!("aircraft: {aircraft} topics x {rate} event/s, published together"),
            aircraft,
            rate,
            vec!["--feed", "aircraft", "--burst"],
        ),
        (
            "sensors: 6 topics x 1 event/s".to_string(),
            6,
            1.0,
            vec!["--feed", "sensors"],
        ),
    ];
    for (shape, topics, rate, feed) in feeds {
        for delay in [0u64, 20] {
            for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
                let coding = codec.map_or("identity", Codec::token).to_string();
                config.say(&format!(
                    "compression, {shape}, write delay {delay} ms: {coding}"
                ));
                let mut extra = feed.clone();
                let delay_arg = delay.to_string();
                extra.extend(["--write-delay-ms", &delay_arg]);
                extra.extend(codec.iter().flat_map(|c| ["--compression", c.token()]));
                let setup = Setup::new(Stack::TowerSse, rate, topics, &extra);
                let steps = [config.compression_subscribers];
                let report = tolerate(measure(config, &setup, &steps, |o| {
                    o.accept_encoding = codec
                }));
                let run = run_of(coding.clone(), Stack::TowerSse, report);
                results.compression.push(Run {
                    shape: Some(shape.clone()),
                    delay_ms: Some(delay),
                    coding: Some(coding),
                    ..run
                });
            }
        }
    }
}
