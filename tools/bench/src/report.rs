//! The suite's report: `results.md` (tables and target verdicts) and `fanout.svg`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::chart;
use crate::loadgen::{Report, Step};
use crate::scenarios::{BatchIdleRun, CompressionRun};
use crate::suite::{Config, ENCODE_BENCHES, ENCODE_CASES, ORDER, Results};

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

/// p50, p99 and max latency cells.
fn latency(s: &Step) -> String {
    let l = &s.latency;
    format!("{} | {} | {}", ms(l.p50_us), ms(l.p99_us), ms(l.max_us))
}

fn step_of<'a>(results: &'a Results, stack: &str, n: usize) -> Option<&'a Step> {
    let steps = &results.fanout.get(stack)?.steps;
    steps.iter().find(|s| s.connections == n)
}

/// The head of a Markdown table, its columns separated by ` | `.
fn head(md: &mut String, columns: &str) {
    let count = columns.split(" | ").count();
    let _ = writeln!(md, "| {columns} |\n|{}", "---|".repeat(count));
}

type Metric = fn(&Step) -> Option<f64>;

fn cpu(s: &Step) -> Option<f64> {
    s.server_cpu_us_per_event
}

fn p99(s: &Step) -> Option<f64> {
    Some(s.latency.p99_us as f64)
}

/// Target verdicts: (target, measured, met).
pub fn targets(results: &Results, config: &Config) -> Vec<(String, String, Option<bool>)> {
    let mut rows = Vec::new();
    let fanout_steps = if results.fanout.is_empty() {
        &[][..]
    } else {
        &config.steps[..]
    };
    for &n in fanout_steps {
        for (name, metric) in [("CPU/event", cpu as Metric), ("p99", p99)] {
            let of = |stack| step_of(results, stack, n).and_then(metric);
            let r = ratio(of("tower-sse"), of("axum"));
            let floor = ratio(of("raw-floor"), of("axum"));
            let floor = floor.map_or(String::new(), |f| format!(" (raw-socket floor: {f:.2}x)"));
            let measured = format!("{}x of axum{floor}", opt(r, 2));
            let target = format!("fan-out {name} at {n} <= 1/3 of axum");
            rows.push((target, measured, r.map(|r| r <= 1.0 / 3.0)));
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
    let measured = format!("{} KiB{hyper}", opt(idle("tower-sse"), 2));
    let met = idle("tower-sse").map(|k| k <= 8.0);
    if !results.idle.is_empty() {
        rows.push(("idle memory <= 8 KiB per connection".into(), measured, met));
    }
    let burst = |name: &str| results.burst.iter().find(|b| b.0 == name).map(|b| b.1);
    let b = ratio(burst("tower-sse"), burst("axum"));
    if !results.burst.is_empty() {
        rows.push((
            "burst >= 4x axum".into(),
            format!("{}x", opt(b, 2)),
            b.map(|r| r >= 4.0),
        ));
    }
    for case in ENCODE_CASES {
        let Some(e) = results.encode.get(case) else {
            continue;
        };
        let r = ratio(e.get("tower-sse").copied(), e.get("axum").copied());
        let rb = ratio(e.get("tower-sse/body").copied(), e.get("axum").copied());
        let measured = format!("{}x (through the body: {}x)", opt(r, 2), opt(rb, 2));
        rows.push((
            format!("encode {case} >= 2x axum"),
            measured,
            r.map(|r| r >= 2.0),
        ));
    }
    rows.extend(batching_targets(results, config));
    rows.extend(compression_targets(results));
    rows
}

/// The write delay of the batching targets, milliseconds.
const TARGET_DELAY: u64 = 20;

/// The high-rate label of tower-sse with `delay`.
fn delay_label(delay: u64) -> String {
    format!("tower-sse (write delay {delay} ms)")
}

/// The high-rate step of `label` at `n` subscribers, in `shape`.
fn high_rate_step<'a>(
    results: &'a Results,
    shape: &str,
    label: &str,
    n: usize,
) -> Option<&'a Step> {
    let report = results.high_rate.get(shape)?.get(label)?;
    report.steps.iter().find(|s| s.connections == n)
}

/// tower-sse without batching at `n`: the write delay 0 row, or plain tower-sse.
fn no_delay_step<'a>(results: &'a Results, shape: &str, n: usize) -> Option<&'a Step> {
    high_rate_step(results, shape, &delay_label(0), n)
        .or_else(|| high_rate_step(results, shape, "tower-sse", n))
}

/// Issue 15's targets, at the one-topic high rate, for each step: with a 20 ms write
/// delay, CPU per delivered event <= 1/3 of axum's, write system calls per delivered
/// event <= 0.4, p99 <= the no-delay p99 + 20 ms.
pub fn batching_targets(results: &Results, config: &Config) -> Vec<(String, String, Option<bool>)> {
    let mut rows = Vec::new();
    let Some(shape) = config.shapes.iter().find(|s| s.topics == 1) else {
        return rows;
    };
    if !results.high_rate.contains_key(&shape.name) {
        return rows;
    }
    let name = &shape.name;
    let label = delay_label(TARGET_DELAY);
    for &n in &config.high_rate_steps {
        let at = |label: &str| high_rate_step(results, name, label, n);
        let (delayed, plain, axum) = (at(&label), no_delay_step(results, name, n), at("axum"));
        let floor = at("raw-floor");
        let cpu = |s: Option<&Step>| s.and_then(|s| s.server_cpu_us_per_event);
        let writes = |s: Option<&Step>| s.and_then(|s| s.server_syscw_per_event);
        let r = ratio(cpu(delayed), cpu(axum));
        rows.push((
            format!("high rate {name}, {n} subscribers: CPU/event with a {TARGET_DELAY} ms write delay <= 1/3 of axum's"),
            format!(
                "{} us vs axum {} us: {}x (no delay: {}x; raw-socket floor: {}x)",
                opt(cpu(delayed), 2),
                opt(cpu(axum), 2),
                opt(r, 2),
                opt(ratio(cpu(plain), cpu(axum)), 2),
                opt(ratio(cpu(floor), cpu(axum)), 2),
            ),
            r.map(|r| r <= 1.0 / 3.0),
        ));
        let w = writes(delayed);
        rows.push((
            format!("high rate {name}, {n} subscribers: write syscalls/event with a {TARGET_DELAY} ms write delay <= 0.4"),
            format!(
                "{} (no delay: {}; axum: {})",
                opt(w, 3),
                opt(writes(plain), 3),
                opt(writes(axum), 3)
            ),
            w.map(|w| w <= 0.4),
        ));
        let p = delayed.map(|s| s.latency.p99_us);
        let bound = plain.map(|s| s.latency.p99_us + TARGET_DELAY * 1000);
        rows.push((
            format!("high rate {name}, {n} subscribers: p99 with a {TARGET_DELAY} ms write delay <= no-delay p99 + {TARGET_DELAY} ms"),
            format!(
                "{} ms vs {} + {TARGET_DELAY} = {} ms",
                p.map_or("-".into(), ms),
                plain.map_or("-".into(), |s| ms(s.latency.p99_us)),
                bound.map_or("-".into(), ms),
            ),
            p.zip(bound).map(|(p, b)| p <= b),
        ));
    }
    rows
}

/// The compression run of `feed`, `delay`, `coding`: its one step.
fn compression_step<'a>(
    runs: &'a [CompressionRun],
    feed: &str,
    delay: u64,
    coding: &str,
) -> Option<&'a Step> {
    let run = runs
        .iter()
        .find(|r| r.feed == feed && r.delay_ms == delay && r.coding == coding)?;
    run.report.steps.first()
}

/// Issue 16's target: on the aircraft feed, bytes on the wire per delivered event <= 1/4
/// of identity's, for each codec and write delay.
pub fn compression_targets(results: &Results) -> Vec<(String, String, Option<bool>)> {
    let runs = &results.compression;
    let mut rows = Vec::new();
    for run in runs.iter().filter(|r| r.feed.starts_with("aircraft")) {
        if run.coding == "identity" {
            continue;
        }
        let wire = |coding: &str| {
            compression_step(runs, &run.feed, run.delay_ms, coding)?.wire_bytes_per_event
        };
        let (bytes, identity) = (wire(&run.coding), wire("identity"));
        let r = ratio(bytes, identity);
        rows.push((
            format!(
                "{}, {}, write delay {} ms: bytes on the wire/event <= 1/4 of identity",
                run.feed, run.coding, run.delay_ms
            ),
            format!(
                "{} B vs {} B: {}x ({}x smaller)",
                opt(bytes, 1),
                opt(identity, 1),
                opt(r, 3),
                opt(r.map(|r| 1.0 / r), 2)
            ),
            r.map(|r| r <= 0.25),
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
         rate: more, below). Ratios are taken within this one run.\n\n## Targets\n",
        meta("date"),
        meta("commit"),
        meta("cores"),
        meta("cpu"),
        meta("open_files_limit"),
        meta("load_before"),
        meta("load_after"),
        meta("command"),
    );
    md.push_str("| target | measured | |\n|---|---|---|\n");
    for (target, measured, met) in targets(results, config) {
        let met = met.map_or("not measured", |m| if m { "met" } else { "**missed**" });
        let _ = writeln!(md, "| {target} | {measured} | {met} |");
    }

    if !results.check.is_empty() {
        md.push_str("\n## Delivery check\n\n");
        head(
            &mut md,
            "stack | subscribers | events | subscribers with every event, in order | errors",
        );
        for c in &results.check {
            let (stack, n, k, complete) = (&c.stack, c.subscribers, c.events, c.complete);
            let _ = writeln!(md, "| {stack} | {n} | {k} | {complete} | {:?} |", c.errors);
        }
    }

    if !results.fanout.is_empty() {
        let _ = writeln!(
            md,
            "\n## Fan-out\n\nSubscribers are added in steps (connect, settle {} s, measure {} \
             s); {} rounds, each running every stack in turn on a fresh server; every figure \
             is the median of the rounds (lost: the largest). CPU is the server process's CPU \
             time in the window divided by the events the subscribers received in it; RSS \
             per connection is (RSS at the end of the window - RSS before any connection) / \
             subscribers.\n",
            secs(config.settle),
            secs(config.window),
            config.rounds
        );
        head(
            &mut md,
            "stack | subscribers | delivered/s | lost | server CPU/event (us) | p50 (ms) | \
             p99 (ms) | max (ms) | RSS/conn (KiB) | client CPU (cores)",
        );
        for &n in &config.steps {
            for stack in ORDER {
                let Some(s) = step_of(results, stack, n) else {
                    continue;
                };
                let (cpu, rss) = (
                    opt(s.server_cpu_us_per_event, 2),
                    opt(s.server_rss_per_conn_kib, 1),
                );
                let client = s.client_cpu_ns as f64 / 1e9 / s.window_secs.max(1e-9);
                let _ = writeln!(
                    md,
                    "| {stack} | {n} | {:.0} | {} | {cpu} | {} | {rss} | {client:.2} |",
                    s.events_per_sec,
                    s.lost,
                    latency(s)
                );
            }
        }
        md.push('\n');
        head(
            &mut md,
            "subscribers | CPU/event tower-sse / axum | tower-sse / warp | raw-floor / axum | \
             hyper-floor / axum | p99 tower-sse / axum | tower-sse / warp | raw-floor / axum | \
             hyper-floor / axum",
        );
        let pairs = [
            ("tower-sse", "axum"),
            ("tower-sse", "warp"),
            ("raw-floor", "axum"),
            ("hyper-floor", "axum"),
        ];
        for &n in &config.steps {
            let _ = write!(md, "| {n} |");
            for figure in [cpu as Metric, p99] {
                let of = |stack| step_of(results, stack, n).and_then(figure);
                for (a, b) in pairs {
                    let _ = write!(md, " {} |", opt(ratio(of(a), of(b)), 2));
                }
            }
            md.push('\n');
        }
        md.push_str("\n![fan-out: p99 latency and CPU per event](fanout.svg)\n");
    }

    if !results.idle.is_empty() {
        md.push_str(
            "\n## Idle memory\n\nOpen event streams, nothing published (heartbeat every 15 s); \
             (RSS after connecting - RSS before) / connections.\n\n",
        );
        head(
            &mut md,
            "stack | connections | failed | RSS before (MiB) | RSS with connections (MiB) | \
             KiB per connection",
        );
        for stack in ORDER {
            let Some(s) = results.idle.get(stack).and_then(|r| r.steps.first()) else {
                continue;
            };
            let (n, failed) = (s.connections, s.failed);
            let (before, with) = (mib(s.server_rss_base_kib), mib(s.server_rss_kib));
            let per = opt(s.server_rss_per_conn_kib, 2);
            let _ = writeln!(
                md,
                "| {stack} | {n} | {failed} | {before} | {with} | {per} |"
            );
        }
    }

    if !results.churn.is_empty() {
        let _ = writeln!(
            md,
            "\n## Churn\n\n{} client workers each loop: connect, GET the stream, read the \
             response head, close; for {} s, while 10 events/s are published; then, on the \
             same server, a second round. RSS after: {} s after each round; subscribers: what \
             the server counts then (0: every stream was cleaned up).\n",
            config.churn.0,
            secs(config.churn.1),
            secs(config.settle)
        );
        head(
            &mut md,
            "stack | round | connects+disconnects/s | server CPU/cycle (us) | RSS before (MiB) | \
             RSS at end (MiB) | RSS after (MiB) | after - before first round (KiB) | \
             subscribers after | errors",
        );
        for (stack, reports) in ORDER
            .iter()
            .filter_map(|&s| Some((s, results.churn.get(s)?)))
        {
            let first_base = reports
                .first()
                .and_then(|r| r.steps.first()?.server_rss_base_kib);
            for (round, report) in reports.iter().enumerate() {
                let Some(s) = report.steps.first() else {
                    continue;
                };
                let rss = [
                    s.server_rss_base_kib,
                    s.server_rss_kib,
                    s.server_rss_after_kib,
                ]
                .map(mib);
                let delta = s.server_rss_after_kib.zip(first_base);
                let delta = opt(delta.map(|(a, b)| a as f64 - b as f64), 0);
                let subscribers = s.server_subscribers.map_or("-".into(), |n| n.to_string());
                let _ = writeln!(
                    md,
                    "| {stack} | {} | {:.0} | {} | {} | {delta} | {subscribers} | {:?} |",
                    round + 1,
                    s.cycles_per_sec,
                    opt(s.server_cpu_us_per_cycle, 1),
                    rss.join(" | "),
                    report.errors,
                );
            }
        }
    }

    md.push_str("\n## Cross-instance (Redis)\n\n");
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
            head(
                &mut md,
                "setup | subscribers | delivered/s | lost | p50 (ms) | p99 (ms) | max (ms)",
            );
            let single = step_of(results, "tower-sse", s.connections);
            let rows = [
                ("2 instances + Redis", Some(s)),
                ("1 instance, in memory (fan-out above)", single),
            ];
            for (setup, s) in rows.into_iter().filter_map(|(l, s)| Some((l, s?))) {
                let (n, rate, lost) = (s.connections, s.events_per_sec, s.lost);
                let _ = writeln!(
                    md,
                    "| {setup} | {n} | {rate:.0} | {lost} | {} |",
                    latency(s)
                );
            }
        }
        (None, why) => {
            let why = why.as_ref().map_or(String::new(), |w| format!(": {w}"));
            let _ = writeln!(md, "Not run{why}.");
        }
    }

    if !results.high_rate.is_empty() {
        let _ = writeln!(
            md,
            "\n## High rate\n\nEvery subscriber reads every topic; events go to the topics in \
             turn. Per stack: server CPU and write system calls (`syscw` of `/proc/PID/io`: \
             every `write` and `writev`: socket writes, which every stack makes \
             with `writev`, and the runtime's `eventfd` wake-ups) in the window divided by the events the subscribers received in it, \
             publish-to-receive latency, (RSS at the end of the window - RSS before any \
             connection) / subscribers. Connect, settle {} s, measure {} s; the median of {} \
             round(s).\n",
            secs(config.settle),
            secs(config.window),
            config.high_rate_rounds
        );
        head(
            &mut md,
            "shape | stack | subscribers | delivered/s | lost | server CPU/event (us) | \
             write syscalls/event | p50 (ms) | p99 (ms) | max (ms) | RSS/conn (KiB)",
        );
        for (shape, stacks) in &results.high_rate {
            let mut labels: Vec<&String> = stacks.keys().collect();
            labels.sort_by_key(|l| ORDER.iter().position(|o| o == l).unwrap_or(ORDER.len()));
            for (label, s) in labels
                .into_iter()
                .flat_map(|l| stacks[l].steps.iter().map(move |s| (l, s)))
            {
                let (n, rate, lost) = (s.connections, s.events_per_sec, s.lost);
                let (cpu, writes) = (
                    opt(s.server_cpu_us_per_event, 2),
                    opt(s.server_syscw_per_event, 3),
                );
                let rss = opt(s.server_rss_per_conn_kib, 1);
                let _ = writeln!(
                    md,
                    "| {shape} | {label} | {n} | {rate:.0} | {lost} | {cpu} | {writes} | {} | {rss} |",
                    latency(s)
                );
            }
        }
    }

    if !results.high_rate.is_empty() {
        write_delays(&mut md, results, config);
    }
    if !results.batch_idle.is_empty() {
        batch_idle(&mut md, &results.batch_idle, config);
    }
    if !results.compression.is_empty() {
        compression(&mut md, results, config);
    }
    if !results.memory.is_empty() {
        memory(&mut md, results);
    }
    if let Some(blocks) = &results.blocks {
        blocks_section(&mut md, blocks);
    }

    if !results.burst.is_empty() {
        let _ = writeln!(
            md,
            "\n## Burst\n\n{} ready events (~100 bytes each) streamed to one loopback client \
             (`burst` in `tools/bench`), median of {} runs.\n",
            config.burst.0, config.burst.1
        );
        head(&mut md, "stack | events/s | MB/s | vs axum");
        let axum = results.burst.iter().find(|b| b.0 == "axum").map(|b| b.1);
        for (name, eps, mbs) in &results.burst {
            let vs = opt(ratio(Some(*eps), axum), 2);
            let _ = writeln!(md, "| {name} | {eps:.0} | {mbs:.1} | {vs}x |");
        }
    }

    if !results.encode.is_empty() {
        md.push_str(
            "\n## Encode\n\nEvents per second from the caller's input to the frame's bytes, the \
             median of criterion's samples (`benches/encode.rs`). `tower-sse/body`: through the \
             body of `Sse`, one event per frame, the same path axum and warp are measured \
             through.\n\n",
        );
        head(
            &mut md,
            "case | tower-sse | tower-sse/body | axum | warp | tower-sse / axum | \
             tower-sse/body / axum | tower-sse / warp",
        );
        for (case, benches) in &results.encode {
            let get = |b: &str| benches.get(b).copied();
            let _ = write!(md, "| {case} |");
            for bench in ENCODE_BENCHES {
                let _ = write!(md, " {} |", opt(get(bench), 0));
            }
            for (a, b) in [
                ("tower-sse", "axum"),
                ("tower-sse/body", "axum"),
                ("tower-sse", "warp"),
            ] {
                let _ = write!(md, " {}x |", opt(ratio(get(a), get(b)), 2));
            }
            md.push('\n');
        }
    }
    md
}

/// Two panels: p99 latency (ms) and server CPU per event (us) against subscribers.
pub fn svg(results: &Results) -> Result<String, String> {
    let all = results.fanout.values().flat_map(|r| &r.steps);
    let mut steps: Vec<usize> = all.map(|s| s.connections).collect();
    steps.sort_unstable();
    steps.dedup();
    let series = |metric: fn(&Step) -> Option<f64>| -> Vec<chart::Series<'_>> {
        let points = |report: &Report| {
            let at = |s: &Step| Some((steps.iter().position(|&n| n == s.connections)?, metric(s)?));
            report.steps.iter().filter_map(at).collect()
        };
        let of = |stack: &'static str| Some((stack, points(results.fanout.get(stack)?)));
        ORDER.into_iter().filter_map(of).collect()
    };
    let date = results.meta.get("date").map_or("", String::as_str);
    let title = format!("Fan-out at 10 events/s: tower-sse vs axum vs warp ({date})");
    let latency = series(|s| Some(s.latency.p99_us as f64 / 1e3));
    let cpu = series(|s| s.server_cpu_us_per_event);
    chart::svg(
        &title,
        &steps,
        &[
            ("p99 publish-to-receive latency (ms)", latency),
            ("server CPU per delivered event (us)", cpu),
        ],
    )
}

/// Verdict cells: `met`, `**missed**`, `not measured`.
fn verdict(met: Option<bool>) -> &'static str {
    met.map_or("not measured", |m| if m { "met" } else { "**missed**" })
}

/// The write delays side by side, and issue 15's targets.
fn write_delays(md: &mut String, results: &Results, config: &Config) {
    if config.write_delays.is_empty() {
        return;
    }
    md.push_str(
        "\n### Write batching (`SseLayer::batch_delay`)\n\nEach write delay next to tower-sse \
         without one and axum, from the table above. p99 bound: the no-delay p99 (the write \
         delay 0 row) plus the delay.\n\n",
    );
    head(
        md,
        "shape | subscribers | write delay (ms) | server CPU/event (us) | vs axum | write \
         syscalls/event | p50 (ms) | p99 (ms) | p99 bound (ms) | within | max (ms) | lost",
    );
    for (shape, stacks) in &results.high_rate {
        for &n in &config.high_rate_steps {
            let axum = stacks
                .get("axum")
                .and_then(|r| r.steps.iter().find(|s| s.connections == n));
            let plain = no_delay_step(results, shape, n);
            for &delay in &config.write_delays {
                let Some(s) = high_rate_step(results, shape, &delay_label(delay), n) else {
                    continue;
                };
                let vs = ratio(s.server_cpu_us_per_event, axum.and_then(cpu));
                let bound = plain.map(|p| p.latency.p99_us + delay * 1000);
                let within = bound.map(|b| {
                    if s.latency.p99_us <= b {
                        "yes"
                    } else {
                        "**no**"
                    }
                });
                let _ = writeln!(
                    md,
                    "| {shape} | {n} | {delay} | {} | {}x | {} | {} | {} | {} | {} | {} | {} |",
                    opt(s.server_cpu_us_per_event, 2),
                    opt(vs, 2),
                    opt(s.server_syscw_per_event, 3),
                    ms(s.latency.p50_us),
                    ms(s.latency.p99_us),
                    bound.map_or("-".into(), ms),
                    within.unwrap_or("-"),
                    ms(s.latency.max_us),
                    s.lost,
                );
            }
        }
    }
    let rows = batching_targets(results, config);
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "\nTargets of write batching (issue 15), with a {TARGET_DELAY} ms delay:\n"
        );
        head(md, "target | measured | ");
        for (target, measured, met) in rows {
            let _ = writeln!(md, "| {target} | {measured} | {} |", verdict(met));
        }
    }
}

/// Server CPU in the window, percent of one core.
fn core_percent(s: &Step) -> Option<f64> {
    s.server_cpu_ns
        .map(|ns| ns as f64 / 1e9 / s.window_secs.max(1e-9) * 100.0)
}

/// Batching's cost with idle streams.
fn batch_idle(md: &mut String, runs: &[BatchIdleRun], config: &Config) {
    let _ = writeln!(
        md,
        "\n## Batching's cost with idle streams\n\nA tower-sse server, the same window ({} s) \
         with a write delay of 0 (off) and of {TARGET_DELAY} ms. Idle streams are `GET /idle`, \
         subscribed to a topic nothing is published on (no heartbeat falls in the window); \
         active streams read every event of one topic. The layer's one clock ticks only while \
         some stream holds an event: idle streams alone should cost nothing with or without \
         a delay, and next to active streams (the clock ticking all the while) nothing more \
         than the active streams alone.\n",
        secs(config.window)
    );
    head(
        md,
        "write delay (ms) | setup | streams | delivered/s | server CPU (% of a core) | \
         server CPU/event (us) | write syscalls/s | p99 (ms) | RSS/stream (KiB) | failed | lost",
    );
    for run in runs {
        let Some(s) = run.report.steps.first() else {
            continue;
        };
        let per_sec = |n: Option<u64>| n.map(|n| n as f64 / s.window_secs.max(1e-9));
        let active = run.active > 0;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            run.delay_ms,
            run.setup,
            run.idle + run.active,
            s.events_per_sec,
            opt(core_percent(s), 2),
            if active {
                opt(s.server_cpu_us_per_event, 2)
            } else {
                "-".into()
            },
            opt(per_sec(s.server_syscw), 1),
            if active {
                ms(s.latency.p99_us)
            } else {
                "-".into()
            },
            opt(s.server_rss_per_conn_kib, 2),
            s.failed,
            s.lost,
        );
    }
    // The differences that answer the question.
    let cpu_of = |delay: u64, idle: bool, active: bool| {
        runs.iter()
            .find(|r| r.delay_ms == delay && (r.idle > 0) == idle && (r.active > 0) == active)
            .and_then(|r| r.report.steps.first())
            .and_then(core_percent)
    };
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    let _ = writeln!(
        md,
        "\n- idle streams alone, delay {TARGET_DELAY} ms minus delay 0: {} % of a core \
         ({} % vs {} %)\n- idle streams next to active ones, what they add (active + idle \
         minus active alone): delay {TARGET_DELAY} ms: {} % of a core; delay 0: {} %",
        opt(
            diff(cpu_of(TARGET_DELAY, true, false), cpu_of(0, true, false)),
            2
        ),
        opt(cpu_of(TARGET_DELAY, true, false), 2),
        opt(cpu_of(0, true, false), 2),
        opt(
            diff(
                cpu_of(TARGET_DELAY, true, true),
                cpu_of(TARGET_DELAY, false, true)
            ),
            2
        ),
        opt(diff(cpu_of(0, true, true), cpu_of(0, false, true)), 2),
    );
}

/// Compression on the wire, per feed and write delay.
fn compression(md: &mut String, results: &Results, config: &Config) {
    let runs = &results.compression;
    let (subscribers, _, shapes) = &config.compression;
    let _ = writeln!(
        md,
        "\n## Compression on the wire\n\ntower-sse with `SseLayer::compression` (one codec \
         at a time, the crate's defaults: level 3, 8 KiB window), {subscribers} subscribers \
         sending `Accept-Encoding: <codec>` and decoding every piece as it arrives (the \
         delivery and latency checks read the decoded events); identity: the same server \
         without compression. Bytes on the wire: everything read from the sockets in the \
         window (HTTP/1.1 chunk framing included, TCP/IP headers not); body: after the \
         chunked framing; decoded: the event stream itself. Connect, settle {} s, measure \
         {} s, one round.\n",
        secs(config.settle),
        secs(config.window),
    );
    for shape in shapes {
        let delays: Vec<u64> = {
            let mut d: Vec<u64> = runs
                .iter()
                .filter(|r| r.feed == shape.name)
                .map(|r| r.delay_ms)
                .collect();
            d.dedup();
            d
        };
        for delay in delays {
            let _ = writeln!(md, "\n### {}, write delay {delay} ms\n", shape.name);
            head(
                md,
                "coding | delivered/s | lost | wire bytes/event | vs identity | body \
                 bytes/event | decoded bytes/event | server CPU/event (us) | vs identity | \
                 RSS/stream (KiB) | p50 (ms) | p99 (ms) | max (ms) | errors",
            );
            let identity = compression_step(runs, &shape.name, delay, "identity");
            for run in runs
                .iter()
                .filter(|r| r.feed == shape.name && r.delay_ms == delay)
            {
                let Some(s) = run.report.steps.first() else {
                    let cells = "| - ".repeat(12);
                    let _ = writeln!(md, "| {} {cells}| {:?} |", run.coding, run.report.errors);
                    continue;
                };
                let vs = |f: fn(&Step) -> Option<f64>| opt(ratio(f(s), identity.and_then(f)), 3);
                let _ = writeln!(
                    md,
                    "| {} | {:.0} | {} | {} | {}x | {} | {} | {} | {}x | {} | {} | {:?} |",
                    run.coding,
                    s.events_per_sec,
                    s.lost,
                    opt(s.wire_bytes_per_event, 1),
                    vs(|s| s.wire_bytes_per_event),
                    opt(s.body_bytes_per_event, 1),
                    opt(s.decoded_bytes_per_event, 1),
                    opt(s.server_cpu_us_per_event, 2),
                    vs(|s| s.server_cpu_us_per_event),
                    opt(s.server_rss_per_conn_kib, 1),
                    latency(s),
                    run.report.errors,
                );
            }
        }
    }
    let rows = compression_targets(results);
    if !rows.is_empty() {
        md.push_str("\nTarget of compression (issue 16), on the aircraft feed:\n\n");
        head(md, "target | measured | ");
        for (target, measured, met) in rows {
            let _ = writeln!(md, "| {target} | {measured} | {} |", verdict(met));
        }
    }
}

/// RSS per compressed stream.
fn memory(md: &mut String, results: &Results) {
    md.push_str(
        "\n## Memory per compressed stream\n\ntower-sse, streams added in steps; RSS per \
         stream: (RSS at the end of the step's window - RSS before any connection) / streams. \
         Idle: nothing published (the stream's compressor is made with the response); \
         active: the aircraft feed at 2 events/s in all, so every stream has compressed \
         events before it is measured. Over identity: minus identity's figure at the same \
         state and streams, the compressor's own share.\n\n",
    );
    head(
        md,
        "coding | setting | state | streams | RSS before (MiB) | RSS with streams (MiB) | KiB \
         per stream | over identity (KiB) | failed | lost | errors",
    );
    let identity = |state: &str, n: usize| {
        results
            .memory
            .iter()
            .find(|r| r.coding == "identity" && r.state == state)?
            .report
            .steps
            .iter()
            .find(|s| s.connections == n)?
            .server_rss_per_conn_kib
    };
    for state in ["idle", "active"] {
        for run in results.memory.iter().filter(|r| r.state == state) {
            let setting = run.setting.map_or("-".into(), |s| s.label());
            if run.report.steps.is_empty() {
                let cells = "| - ".repeat(7);
                let errors = &run.report.errors;
                let _ = writeln!(
                    md,
                    "| {} | {setting} | {state} {cells}| {errors:?} |",
                    run.coding
                );
            }
            for s in &run.report.steps {
                let over = s
                    .server_rss_per_conn_kib
                    .zip(identity(state, s.connections))
                    .map(|(a, b)| a - b);
                let _ = writeln!(
                    md,
                    "| {} | {setting} | {state} | {} | {} | {} | {} | {} | {} | {} | {:?} |",
                    run.coding,
                    s.connections,
                    mib(s.server_rss_base_kib),
                    mib(s.server_rss_kib),
                    opt(s.server_rss_per_conn_kib, 2),
                    if run.coding == "identity" {
                        "-".into()
                    } else {
                        opt(over, 2)
                    },
                    s.failed,
                    s.lost,
                    run.report.errors,
                );
            }
        }
    }
}

/// Approach (a) against approach (b), offline.
fn blocks_section(md: &mut String, blocks: &crate::scenarios::Blocks) {
    let events = blocks.events.max(1) as f64;
    let identity = blocks.identity_bytes as f64 / events;
    let _ = writeln!(
        md,
        "\n## A compressor per stream or each event compressed alone (offline)\n\n{} frames \
         of the aircraft feed ({} s of 320 reports, as the hub writes them: `event: \
         position`, the data, `id:`), {identity:.1} bytes each uncompressed. (a): one \
         compressor per subscriber's stream, as tower-sse does, flushed after each event or \
         each group of 4 (a batched write); every subscriber pays its CPU. (b): each event \
         (or group of 4) compressed once, alone, into bytes any subscriber's stream can \
         carry (gzip and deflate: raw deflate blocks; zstd: a frame each; brotli: a whole \
         stream each, which brotli cannot concatenate: shown for comparison only); its CPU \
         is shared by all {} subscribers. CPU: the thread's own CPU time \
         (`CLOCK_THREAD_CPUTIME_ID`), the mean over passes lasting at least 0.3 s in all.\n",
        blocks.events,
        blocks.events / 320,
        blocks.subscribers,
    );
    head(
        md,
        "codec | setting | approach | bytes/event | identity / this | CPU per event \
         compressed (us) | CPU per delivered event (us)",
    );
    for row in &blocks.rows {
        let bytes = row.bytes as f64 / events;
        let per_delivered = if row.per_subscriber {
            row.ns_per_event
        } else {
            row.ns_per_event / blocks.subscribers.max(1) as f64
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {bytes:.1} | {:.2}x | {:.2} | {:.3} |",
            row.codec,
            row.setting.label(),
            row.approach,
            identity / bytes.max(1e-9),
            row.ns_per_event / 1e3,
            per_delivered / 1e3,
        );
    }
}
