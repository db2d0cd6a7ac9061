//! The sections that run fan-out servers and the load generator (fan-out, churn, two
//! instances on one Redis, high rate with write batching, compression), and burst.

use serde_json::Value;

use super::Config;
use super::child::{Redis, Server};
use crate::codec::Codec;
use crate::loadgen::{self, Options};
use crate::results::{Report, Results, Run};
use crate::server::{Stack, path};

/// Starts `fanout-server` with `stack` and `args`; the load generator's options for it.
fn start(
    config: &Config,
    stack: Stack,
    topics: u64,
    args: &[&str],
) -> Result<(Server, Options), String> {
    let topics_arg = topics.to_string();
    let mut all = vec!["--stack", stack.name(), "--topics", &topics_arg];
    all.extend(args);
    let server = Server::start(&config.tool("fanout-server"), &all)?;
    let mut options = Options::new(vec![server.url(&path(stack, Some(topics)))]);
    (options.settle, options.duration, options.quiet) =
        (config.settle, config.args.window, config.args.smoke);
    (options.pids, options.control) = (vec![server.pid], Some(server.control.clone()));
    Ok((server, options))
}

/// A server of `stack` with `args`, the load generator at `steps`: its report, or, if
/// the run failed as a whole, its error in the report's errors.
fn measure(
    config: &Config,
    stack: Stack,
    topics: u64,
    args: &[&str],
    steps: &[usize],
    codec: Option<Codec>,
) -> Report {
    let report = start(config, stack, topics, args).and_then(|(_server, mut options)| {
        (options.steps, options.accept_encoding) = (steps.to_vec(), codec);
        loadgen::run(&options)
    });
    report.unwrap_or_else(|error| {
        eprintln!("suite: {} {args:?}: {error}", stack.name());
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
        if let Some(Value::Array(first)) = values.first() {
            let item = |i| values.iter().filter_map(|v| v.get(i)).collect::<Vec<_>>();
            return Value::Array((0..first.len()).map(|i| combine(&item(i), key)).collect());
        }
        let mut numbers: Vec<&Value> = values.iter().copied().filter(|v| v.is_number()).collect();
        numbers.sort_by(|a, b| {
            a.as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b.as_f64().unwrap_or(0.0))
        });
        let pick = match key {
            "lost" | "reordered" | "failed" => numbers.last(),
            "connected" => numbers.first(),
            _ => numbers.get(numbers.len() / 2),
        };
        pick.or(values.first())
            .map_or(Value::Null, |v| (*v).clone())
    }
    let values: Vec<Value> = reports
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let mut median: Report =
        serde_json::from_value(combine(&values.iter().collect::<Vec<_>>(), "")).unwrap_or_default();
    median.errors = reports.iter().flat_map(|r| r.errors.clone()).collect();
    median
}

fn run_of(label: impl Into<String>, stack: Stack, report: Report) -> Run {
    Run {
        label: label.into(),
        stack: stack.name().into(),
        report,
        ..Run::default()
    }
}

/// Every section here that `config` runs.
pub(super) fn run(config: &Config, results: &mut Results) -> Result<(), String> {
    if config.runs("fanout") {
        // One topic, 10 events/s; each stack once a round, in turn.
        let mut rounds = vec![Vec::new(); Stack::ALL.len()];
        for round in 1..=config.args.rounds {
            for (stack, reports) in Stack::ALL.iter().zip(&mut rounds) {
                config.say(&format!(
                    "fan-out round {round}: {} {:?}",
                    stack.name(),
                    config.args.steps
                ));
                reports.push(measure(config, *stack, 1, &[], &config.args.steps, None));
            }
        }
        let runs = Stack::ALL
            .iter()
            .zip(rounds)
            .map(|(&s, r)| run_of(s.name(), s, median(&r)));
        results.fanout = runs.collect();
    }
    if config.runs("churn") {
        for stack in [Stack::TowerSse, Stack::Axum, Stack::Warp] {
            config.say(&format!("churn: {}", stack.name()));
            let (_server, mut options) = start(config, stack, 1, &[])?;
            (options.churn, options.duration) = (Some(config.churn.0), config.churn.1);
            for round in ["round 1", "round 2"] {
                let run = run_of(stack.name(), stack, loadgen::run(&options)?);
                results.churn.push(Run {
                    shape: Some(round.into()),
                    ..run
                });
            }
        }
    }
    if config.runs("redis") {
        config.say("two tower-sse instances on one Redis");
        let report = redis(config).unwrap_or_else(|e| Report {
            errors: [(e, 1)].into(),
            ..Report::default()
        });
        results
            .redis
            .push(run_of("2 instances + Redis", Stack::TowerSse, report));
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
    let (_a, mut options) = start(config, Stack::TowerSse, 1, &["--redis", &redis.url])?;
    let (b, _) = start(
        config,
        Stack::TowerSse,
        1,
        &["--redis", &redis.url, "--rate", "0"],
    )?;
    options.targets.push(b.url(&path(Stack::TowerSse, Some(1))));
    options.pids.push(b.pid);
    // A subscription on Redis starts once its instance reads the topic: a moment more.
    (options.steps, options.settle) = (
        vec![config.redis],
        config.settle.max(std::time::Duration::from_secs(1)),
    );
    loadgen::run(&options)
}

/// One topic at 200 events/s, and the aircraft example's shape (320 topics at 1 event/s
/// each), every subscriber on all: every stack, then tower-sse with each write delay.
fn high_rate(config: &Config, results: &mut Results) {
    let aircraft = config.aircraft.0;
    for (shape, topics, rate) in [
        ("200 events/s".into(), 1, "200"),
        (format!("{aircraft} topics x 1 event/s"), aircraft, "1"),
    ] {
        let stacks = Stack::ALL.map(|s| (s.name().to_string(), s, None));
        let delays = [5, 20, 50].map(|d| {
            (
                format!("tower-sse (write delay {d} ms)"),
                Stack::TowerSse,
                Some(d),
            )
        });
        for (label, stack, delay) in stacks.into_iter().chain(delays) {
            config.say(&format!("high rate, {shape}: {label}"));
            let delay_arg = delay.map(|d: u64| d.to_string());
            let mut args = vec!["--rate", rate];
            args.extend(delay_arg.iter().flat_map(|d| ["--write-delay-ms", d]));
            let report = measure(
                config,
                stack,
                topics,
                &args,
                &config.args.high_rate_steps,
                None,
            );
            let delay_ms = delay.or((stack == Stack::TowerSse).then_some(0));
            results.high_rate.push(Run {
                shape: Some(shape.clone()),
                delay_ms,
                ..run_of(label, stack, report)
            });
        }
    }
}

/// tower-sse, identity and each codec, the aircraft feed (published together, as the
/// example's tick does) and the sensors feed, without and with a 20 ms write delay.
fn compression(config: &Config, results: &mut Results) {
    let (aircraft, rate) = config.aircraft;
    let aircraft_shape =
        format!("aircraft: {aircraft} topics x {rate} event/s, published together");
    let rate = rate.to_string();
    let feeds = [
        (
            aircraft_shape,
            aircraft,
            vec!["--feed", "aircraft", "--burst", "--rate", &rate],
        ),
        (
            "sensors: 6 topics x 1 event/s".into(),
            6,
            vec!["--feed", "sensors", "--rate", "1"],
        ),
    ];
    for (shape, topics, feed) in feeds {
        for delay in [0u64, 20] {
            for codec in [None].into_iter().chain(Codec::ALL.map(Some)) {
                let coding = codec.map_or("identity", Codec::token);
                config.say(&format!(
                    "compression, {shape}, write delay {delay} ms: {coding}"
                ));
                let delay_arg = delay.to_string();
                let mut args = feed.clone();
                args.extend(["--write-delay-ms", &delay_arg]);
                args.extend(codec.iter().flat_map(|c| ["--compression", c.token()]));
                let report = measure(
                    config,
                    Stack::TowerSse,
                    topics,
                    &args,
                    &[config.compression],
                    codec,
                );
                let run = run_of(coding, Stack::TowerSse, report);
                results.compression.push(Run {
                    shape: Some(shape.clone()),
                    delay_ms: Some(delay),
                    ..run
                });
            }
        }
    }
}
