//! The suite's report: `results.md` (tables and target verdicts) and `fanout.svg`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::chart;
use crate::loadgen::{Report, Step};
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
    for &n in &config.steps {
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
    rows.push(("idle memory <= 8 KiB per connection".into(), measured, met));
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
        let measured = format!("{}x (through the body: {}x)", opt(r, 2), opt(rb, 2));
        rows.push((
            format!("encode {case} >= 2x axum"),
            measured,
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
