//! The Markdown tables of a results document (`results.md`), made from the JSON alone.

use std::fmt::Write as _;

use crate::loadgen::Step;
use crate::results::{Idle, Results, Run};

/// A Markdown table.
fn table(out: &mut String, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(
        out,
        "\n| {} |\n|{}",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

/// Three significant digits, at most two decimals.
fn num(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 || a == 0.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("-".into(), num)
}

fn ms(us: u64) -> String {
    num(us as f64 / 1e3)
}

fn met(ok: bool) -> String {
    if ok {
        "met".into()
    } else {
        "**missed**".into()
    }
}

/// The load columns of a step: delivered/s, lost, CPU/event, writes/event, p50, p99,
/// max, RSS per connection.
fn step_cells(step: &Step) -> Vec<String> {
    vec![
        format!("{:.0}", step.events_per_sec),
        step.lost.to_string(),
        opt(step.server_cpu_us_per_event),
        step.server_syscw_per_event
            .map_or("-".into(), |w| format!("{w:.3}")),
        ms(step.latency.p50_us),
        ms(step.latency.p99_us),
        ms(step.latency.max_us),
        opt(step.server_rss_per_conn_kib),
    ]
}

const STEP_HEADER: [&str; 8] = [
    "delivered/s",
    "lost",
    "server CPU/event (us)",
    "write syscalls/event",
    "p50 (ms)",
    "p99 (ms)",
    "max (ms)",
    "RSS/conn (KiB)",
];

/// Rows of `runs`, one per step: `first` columns, then the step's.
fn step_rows<'a>(
    runs: impl IntoIterator<Item = &'a Run>,
    first: impl Fn(&Run) -> Vec<String>,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for run in runs {
        for step in &run.report.steps {
            let mut row = first(run);
            row.push(step.connections.to_string());
            row.extend(step_cells(step));
            rows.push(row);
        }
    }
    rows
}

fn step_of<'a>(
    runs: &'a [Run],
    pick: impl Fn(&Run) -> bool,
    connections: usize,
) -> Option<&'a Step> {
    let run = runs.iter().find(|r| pick(r))?;
    run.report
        .steps
        .iter()
        .find(|s| s.connections == connections)
}

/// The whole document.
pub fn render(results: &Results) -> String {
    let mut out = String::from("# tower-sse benchmark results\n\n");
    let meta = &results.meta;
    let _ = writeln!(out, "- date: {}; commit {}", meta.date, meta.commit);
    let files = meta.open_files.map_or("?".into(), |n| n.to_string());
    let _ = writeln!(
        out,
        "- machine: {}; open files per process: {files}",
        meta.machine
    );
    let _ = writeln!(
        out,
        "- load average (1/5/15 min): {} before, {} after",
        meta.load_before, meta.load_after
    );
    let _ = writeln!(out, "- command: `{}`", meta.command);
    out.push_str(
        "\nServers and load generators are separate processes on the same cores (loopback); every \
         server runs on tokio with 2 workers. Methods: `benches/README.md`. Compare ratios within \
         one run, not figures across runs.\n",
    );
    targets(&mut out, results);
    if !results.check.is_empty() {
        out.push_str("\n## Delivery check\n");
        let rows = results.check.iter().map(|c| {
            let errors = if c.errors.is_empty() {
                "none".into()
            } else {
                format!("{:?}", c.errors)
            };
            vec![
                c.label.clone(),
                c.subscribers.to_string(),
                c.events.to_string(),
                c.complete.to_string(),
                errors,
            ]
        });
        table(
            &mut out,
            &[
                "stack",
                "subscribers",
                "events",
                "with every event, in order",
                "errors",
            ],
            rows,
        );
    }
    if !results.fanout.is_empty() {
        out.push_str("\n## Fan-out\n\nOne topic, 10 events/s of a 140-byte JSON payload; figures: medians of the rounds.\n");
        let mut header = vec!["stack", "subscribers"];
        header.extend(STEP_HEADER);
        header.push("client CPU (cores)");
        let mut rows = step_rows(&results.fanout, |r| vec![r.label.clone()]);
        let client = results
            .fanout
            .iter()
            .flat_map(|r| &r.report.steps)
            .map(|s| format!("{:.2}", s.client_cpu_cores));
        rows.iter_mut().zip(client).for_each(|(row, c)| row.push(c));
        table(&mut out, &header, rows);
        let steps = results
            .fanout
            .first()
            .map_or(Vec::new(), |r| r.report.steps.clone());
        let ratio = |stack: &str, n: usize, f: fn(&Step) -> Option<f64>| {
            let a = step_of(&results.fanout, |r| r.stack == stack, n).and_then(f);
            let b = step_of(&results.fanout, |r| r.stack == "axum", n).and_then(f);
            a.zip(b)
                .map_or("-".into(), |(a, b)| format!("{:.2}", a / b))
        };
        let cpu: fn(&Step) -> Option<f64> = |s| s.server_cpu_us_per_event;
        let p99: fn(&Step) -> Option<f64> = |s| Some(s.latency.p99_us as f64);
        let rows = steps.iter().map(|s| {
            let mut row = vec![s.connections.to_string()];
            for f in [cpu, p99] {
                row.extend(
                    ["tower-sse", "warp", "hyper-floor", "raw-floor"]
                        .map(|stack| ratio(stack, s.connections, f)),
                );
            }
            row
        });
        let header = [
            "subscribers",
            "CPU/event tower-sse / axum",
            "warp / axum",
            "hyper-floor / axum",
            "raw-floor / axum",
            "p99 tower-sse / axum",
            "warp / axum",
            "hyper-floor / axum",
            "raw-floor / axum",
        ];
        table(&mut out, &header, rows);
    }
    idle(&mut out, &results.idle);
    if !results.churn.is_empty() {
        out.push_str("\n## Churn\n\nWorkers loop connect, GET the stream, read the response head, close, while 10 events/s are published; two rounds on one server. After: RSS and subscribers once settled (0: every stream cleaned up).\n");
        let kib = |k: Option<u64>| k.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        let rows = results.churn.iter().flat_map(|c| {
            c.rounds.iter().enumerate().filter_map(move |(i, r)| {
                let s = r.steps.first()?;
                Some(vec![
                    c.stack.clone(),
                    (i + 1).to_string(),
                    format!("{:.0}", s.cycles_per_sec),
                    opt(s.server_cpu_us_per_cycle),
                    kib(s.server_rss_base_kib),
                    kib(s.server_rss_kib),
                    kib(s.server_rss_after_kib),
                    s.subscribers_after.map_or("-".into(), |n| n.to_string()),
                    format!("{:?}", r.errors),
                ])
            })
        });
        let header = [
            "stack",
            "round",
            "cycles/s",
            "server CPU/cycle (us)",
            "RSS before (MiB)",
            "RSS at end (MiB)",
            "RSS after (MiB)",
            "subscribers after",
            "errors",
        ];
        table(&mut out, &header, rows);
    }
    if let Some(redis) = &results.redis {
        out.push_str("\n## Cross-instance (Redis)\n\nTwo tower-sse instances (`RedisStorage`) on one `redis-server`, the subscribers split over both, 10 events/s published on one.\n");
        let mut header = vec!["setup", "subscribers"];
        header.extend(STEP_HEADER);
        table(
            &mut out,
            &header,
            step_rows([redis], |r| vec![r.label.clone()]),
        );
    } else if let Some(why) = &results.redis_skipped {
        let _ = writeln!(out, "\n## Cross-instance (Redis)\n\nNot run: {why}");
    }
    high_rate(&mut out, &results.high_rate);
    if !results.compression.is_empty() {
        out.push_str("\n## Compression on the wire\n\ntower-sse with `SseLayer::compression` (one codec, the crate's defaults); subscribers ask for it and decode every piece. Bytes on the wire: everything read from the sockets (HTTP/1.1 framing included).\n");
        let rows = results.compression.iter().filter_map(|r| {
            let s = r.report.steps.first()?;
            let identity = results.compression.iter().find(|i| {
                i.shape == r.shape
                    && i.delay_ms == r.delay_ms
                    && i.coding.as_deref() == Some("identity")
            });
            let base = identity.and_then(|i| i.report.steps.first()?.wire_bytes_per_event);
            let vs = s
                .wire_bytes_per_event
                .zip(base)
                .map_or("-".into(), |(a, b)| format!("{:.3}x", a / b));
            Some(vec![
                r.shape.clone().unwrap_or_default(),
                r.delay_ms.unwrap_or(0).to_string(),
                r.label.clone(),
                format!("{:.0}", s.events_per_sec),
                s.lost.to_string(),
                opt(s.wire_bytes_per_event),
                vs,
                opt(s.decoded_bytes_per_event),
                opt(s.server_cpu_us_per_event),
                opt(s.server_rss_per_conn_kib),
                ms(s.latency.p99_us),
                format!("{:?}", r.report.errors),
            ])
        });
        let header = [
            "feed",
            "write delay (ms)",
            "coding",
            "delivered/s",
            "lost",
            "wire bytes/event",
            "vs identity",
            "decoded bytes/event",
            "server CPU/event (us)",
            "RSS/stream (KiB)",
            "p99 (ms)",
            "errors",
        ];
        table(&mut out, &header, rows);
    }
    if !results.burst.is_empty() {
        let events = results.burst[0].events;
        let _ = writeln!(
            out,
            "\n## Burst\n\n{events} ready events (~100 bytes each) streamed to one loopback client, the median of the runs."
        );
        let axum = results
            .burst
            .iter()
            .find(|b| b.stack == "axum")
            .map_or(f64::NAN, |b| b.events_per_sec);
        let rows = results.burst.iter().map(|b| {
            vec![
                b.stack.clone(),
                format!("{:.0}", b.events_per_sec),
                format!("{:.1}", b.mb_per_sec),
                format!("{:.2}x", b.events_per_sec / axum),
            ]
        });
        table(&mut out, &["stack", "events/s", "MB/s", "vs axum"], rows);
    }
    if !results.encode.is_empty() {
        out.push_str("\n## Encode\n\nEvents per second from the caller's input to the frame's bytes: criterion's median (`benches/encode.rs`). `tower-sse/body`: through the body of `Sse`, the path axum and warp are measured through.\n");
        let mut cases: Vec<&str> = results.encode.iter().map(|e| e.case.as_str()).collect();
        cases.dedup();
        let eps = |case: &str, bench: &str| {
            let e = results
                .encode
                .iter()
                .find(|e| e.case == case && e.bench == bench);
            e.map(|e| 1e9 / e.ns_per_event)
        };
        let rows = cases.iter().map(|&case| {
            let mut row = vec![case.to_string()];
            row.extend(
                ["tower-sse", "tower-sse/body", "axum", "warp"]
                    .map(|b| eps(case, b).map_or("-".into(), |x| format!("{x:.0}"))),
            );
            for (a, b) in [
                ("tower-sse", "axum"),
                ("tower-sse/body", "axum"),
                ("tower-sse", "warp"),
            ] {
                row.push(
                    eps(case, a)
                        .zip(eps(case, b))
                        .map_or("-".into(), |(a, b)| format!("{:.2}x", a / b)),
                );
            }
            row
        });
        let header = [
            "case",
            "tower-sse",
            "tower-sse/body",
            "axum",
            "warp",
            "tower-sse / axum",
            "tower-sse/body / axum",
            "tower-sse / warp",
        ];
        table(&mut out, &header, rows);
    }
    out
}

fn idle(out: &mut String, idle: &[Idle]) {
    if idle.is_empty() {
        return;
    }
    out.push_str("\n## Idle memory\n\nOpen event streams on a topic nobody publishes on, HTTP/1.1, the default heartbeat (15 s; the raw floor sends none), all in one server process, held by several load generator processes: (RSS with the streams - RSS before) / streams. Then the server's CPU over a window with the most streams open, and one event published on their topic: the streams that received it.\n");
    let rows = idle.iter().flat_map(|i| {
        i.sizes.iter().map(move |s| {
            vec![
                i.label.clone(),
                s.streams.to_string(),
                s.connected.to_string(),
                s.failed.to_string(),
                format!("{:.1}", i.rss_before_kib as f64 / 1024.0),
                format!("{:.1}", s.rss_kib as f64 / 1024.0),
                format!("{:.2}", s.kib_per_stream),
                format!("{:.0}", s.streams_per_sec),
            ]
        })
    });
    let header = [
        "server",
        "streams",
        "open",
        "failed",
        "RSS before (MiB)",
        "RSS with them (MiB)",
        "KiB per stream",
        "new streams/s",
    ];
    table(out, &header, rows);
    let rows = idle.iter().map(|i| {
        let hb = i.heartbeat.as_ref();
        vec![
            i.label.clone(),
            hb.map_or("-".into(), |h| h.streams.to_string()),
            hb.map_or("-".into(), |h| format!("{:.0}", h.window_secs)),
            hb.map_or("-".into(), |h| format!("{:.3}", h.cpu_percent)),
            i.delivered
                .map_or("not published".into(), |d| d.to_string()),
            i.processes.to_string(),
        ]
    });
    let header = [
        "server",
        "streams",
        "window (s)",
        "server CPU (% of a core)",
        "received the published event",
        "load generator processes",
    ];
    table(out, &header, rows);
}

fn high_rate(out: &mut String, runs: &[Run]) {
    if runs.is_empty() {
        return;
    }
    out.push_str("\n## High rate\n\nEvery subscriber reads every topic. Write system calls: `syscw` of `/proc/PID/io` (socket writes and the runtime's wake-ups), per delivered event.\n");
    let mut header = vec!["shape", "stack", "subscribers"];
    header.extend(STEP_HEADER);
    table(
        out,
        &header,
        step_rows(runs, |r| {
            vec![r.shape.clone().unwrap_or_default(), r.label.clone()]
        }),
    );
    out.push_str("\n### Write batching (`SseLayer::batch_delay`)\n\np99 bound: the no-delay p99 plus the delay.\n");
    let rows = runs.iter().filter(|r| r.delay_ms.is_some()).flat_map(|r| {
        r.report.steps.iter().map(move |s| {
            let same = |f: &dyn Fn(&Run) -> bool| {
                step_of(runs, |x| x.shape == r.shape && f(x), s.connections)
            };
            let axum = same(&|x| x.stack == "axum").and_then(|a| a.server_cpu_us_per_event);
            let none = same(&|x| x.delay_ms == Some(0)).map(|n| n.latency.p99_us as f64 / 1e3);
            let bound = none.map(|n| n + r.delay_ms.unwrap_or(0) as f64);
            let p99 = s.latency.p99_us as f64 / 1e3;
            vec![
                r.shape.clone().unwrap_or_default(),
                s.connections.to_string(),
                r.delay_ms.unwrap_or(0).to_string(),
                opt(s.server_cpu_us_per_event),
                s.server_cpu_us_per_event
                    .zip(axum)
                    .map_or("-".into(), |(a, b)| format!("{:.2}x", a / b)),
                s.server_syscw_per_event
                    .map_or("-".into(), |w| format!("{w:.3}")),
                num(p99),
                opt(bound),
                bound.map_or("-".into(), |b| {
                    if p99 <= b {
                        "yes".into()
                    } else {
                        "**no**".into()
                    }
                }),
            ]
        })
    });
    let header = [
        "shape",
        "subscribers",
        "write delay (ms)",
        "server CPU/event (us)",
        "vs axum",
        "write syscalls/event",
        "p99 (ms)",
        "p99 bound (ms)",
        "within",
    ];
    table(out, &header, rows);
}

/// The targets of the issues, with what this run measured.
fn targets(out: &mut String, results: &Results) {
    let mut rows = Vec::new();
    if let Some(ours) = results.idle.iter().find(|i| i.label == "tower-sse") {
        for s in &ours.sizes {
            rows.push(vec![
                format!("idle memory at {} streams <= 3 KiB per stream", s.streams),
                format!("{:.2} KiB", s.kib_per_stream),
                met(s.kib_per_stream <= 3.0),
            ]);
        }
        if let Some(h) = &ours.heartbeat {
            rows.push(vec![
                format!("heartbeats of {} idle streams <= 1 % of a core", h.streams),
                format!("{:.3} %", h.cpu_percent),
                met(h.cpu_percent <= 1.0),
            ]);
        }
        let (streams, secs) = ours
            .sizes
            .iter()
            .fold((0, 0.0), |(_, t), s| (s.streams, t + s.connect_secs));
        let rate = streams as f64 / secs;
        rows.push(vec![
            format!("{streams} streams opened at >= 5,000 streams/s"),
            format!("{rate:.0} streams/s"),
            met(rate >= 5_000.0),
        ]);
        if let Some(d) = ours.delivered {
            rows.push(vec![
                format!("every one of {streams} streams receives a published event"),
                d.to_string(),
                met(d == streams),
            ]);
        }
    }
    let burst = |stack: &str| {
        results
            .burst
            .iter()
            .find(|b| b.stack == stack)
            .map(|b| b.events_per_sec)
    };
    if let Some((ours, axum)) = burst("tower-sse").zip(burst("axum")) {
        rows.push(vec![
            "burst >= 4x axum".into(),
            format!("{:.2}x", ours / axum),
            met(ours >= 4.0 * axum),
        ]);
    }
    let mut cases: Vec<&str> = results.encode.iter().map(|e| e.case.as_str()).collect();
    cases.dedup();
    for case in cases {
        let ns = |bench: &str| {
            results
                .encode
                .iter()
                .find(|e| e.case == case && e.bench == bench)
                .map(|e| e.ns_per_event)
        };
        if let Some((ours, axum)) = ns("tower-sse").zip(ns("axum")) {
            rows.push(vec![
                format!("encode {case} >= 2x axum"),
                format!("{:.2}x", axum / ours),
                met(axum >= 2.0 * ours),
            ]);
        }
    }
    let batched = results
        .high_rate
        .iter()
        .filter(|r| r.delay_ms == Some(20) && r.shape.as_deref() == Some("200 events/s"));
    for run in batched {
        for s in &run.report.steps {
            let none = step_of(
                &results.high_rate,
                |r| r.shape == run.shape && r.delay_ms == Some(0),
                s.connections,
            );
            if let Some(w) = s.server_syscw_per_event {
                rows.push(vec![format!("200 events/s, {} subscribers, 20 ms write delay: write syscalls/event <= 0.4", s.connections), format!("{w:.3}"), met(w <= 0.4)]);
            }
            if let Some(none) = none {
                let (p99, bound) = (
                    s.latency.p99_us as f64 / 1e3,
                    none.latency.p99_us as f64 / 1e3 + 20.0,
                );
                rows.push(vec![format!("200 events/s, {} subscribers, 20 ms write delay: p99 <= no-delay p99 + 20 ms", s.connections), format!("{} vs {} ms", num(p99), num(bound)), met(p99 <= bound)]);
            }
        }
    }
    for run in results.compression.iter().filter(|r| {
        r.delay_ms == Some(0)
            && r.label != "identity"
            && r.shape
                .as_deref()
                .is_some_and(|s| s.starts_with("aircraft"))
    }) {
        let identity = results
            .compression
            .iter()
            .find(|i| i.shape == run.shape && i.delay_ms == Some(0) && i.label == "identity");
        let wire = |r: &Run| r.report.steps.first().and_then(|s| s.wire_bytes_per_event);
        if let Some((a, b)) = wire(run).zip(identity.and_then(wire)) {
            rows.push(vec![
                format!(
                    "aircraft feed, {}: bytes on the wire/event <= 1/4 of identity",
                    run.label
                ),
                format!("{a:.1} B vs {b:.1} B"),
                met(a <= b / 4.0),
            ]);
        }
    }
    if !rows.is_empty() {
        out.push_str("\n## Targets\n");
        table(out, &["target", "measured", ""], rows);
    }
}
