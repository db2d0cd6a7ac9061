//! The Markdown tables of a results document (`results.md`), made from the JSON alone.

use std::fmt::Write as _;

use crate::results::{Results, Run, Step};

/// Appends a Markdown table.
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

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn met(ok: bool) -> String {
    if ok {
        "met".into()
    } else {
        "**missed**".into()
    }
}

/// The step of `connections` of the first run `pick` takes.
fn step<'a>(runs: &'a [Run], connections: usize, pick: impl Fn(&Run) -> bool) -> Option<&'a Step> {
    let steps = &runs.iter().find(|r| pick(r))?.report.steps;
    steps.iter().find(|s| s.connections == connections)
}

/// A table of load runs, a row per step: the feed (if any), the stack, then the step.
fn loads(out: &mut String, title: &str, text: &str, runs: &[Run]) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n## {title}\n\n{text}");
    let header = [
        "feed",
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
        "wire bytes/event",
        "client CPU (cores)",
        "errors",
    ];
    let rows = runs.iter().flat_map(|r| {
        r.report.steps.iter().map(|s| {
            let feed = r.shape.clone().map_or("-".into(), |f| match r.delay_ms {
                Some(d) if r.stack == "tower-sse" && title.starts_with("Compression") => {
                    format!("{f}, delay {d} ms")
                }
                _ => f,
            });
            vec![
                feed,
                r.label.clone(),
                s.connections.to_string(),
                format!("{:.0}", s.events_per_sec),
                s.lost.to_string(),
                opt(s.server_cpu_us_per_event),
                s.server_syscw_per_event
                    .map_or("-".into(), |w| format!("{w:.3}")),
                num(ms(s.latency.p50_us)),
                num(ms(s.latency.p99_us)),
                num(ms(s.latency.max_us)),
                opt(s.server_rss_per_conn_kib),
                opt(s.wire_bytes_per_event),
                format!("{:.2}", s.client_cpu_cores),
                format!("{:?}", r.report.errors),
            ]
        })
    });
    table(out, &header, rows);
}

/// The whole document.
pub fn render(results: &Results) -> String {
    let (mut out, meta) = (
        String::from("# tower-sse benchmark results\n\n"),
        &results.meta,
    );
    let files = meta.open_files.map_or("?".into(), |n| n.to_string());
    let _ = write!(
        out,
        "- date: {}; commit {}\n- machine: {}; open files per process: {files}\n\
         - load average (1/5/15 min): {} before, {} after\n- command: `{}`\n\n\
         Servers and load generators are separate processes on the same cores (loopback), every \
         server on tokio with 2 workers; methods in `benches/README.md`. Compare ratios within one \
         run, not figures across runs.\n",
        meta.date, meta.commit, meta.machine, meta.load_before, meta.load_after, meta.command
    );
    targets(&mut out, results);
    let text =
        "One topic, 10 events/s of a 140-byte JSON payload; each figure the median of the rounds.";
    loads(&mut out, "Fan-out", text, &results.fanout);
    if let Some(first) = results.fanout.first() {
        let header = [
            "subscribers",
            "CPU/event: tower-sse / axum",
            "warp / axum",
            "hyper-floor / axum",
            "raw-floor / axum",
            "p99: tower-sse / axum",
            "warp / axum",
            "hyper-floor / axum",
            "raw-floor / axum",
        ];
        let rows = first.report.steps.iter().map(|s| {
            let mut row = vec![s.connections.to_string()];
            let cpu = |s: &Step| s.server_cpu_us_per_event;
            for figure in [cpu, |s: &Step| Some(s.latency.p99_us as f64)] {
                let of = |stack: &str| {
                    step(&results.fanout, s.connections, |r| r.stack == stack).and_then(figure)
                };
                let ratio = |stack| {
                    of(stack)
                        .zip(of("axum"))
                        .map_or("-".into(), |(a, b)| format!("{:.2}", a / b))
                };
                row.extend(["tower-sse", "warp", "hyper-floor", "raw-floor"].map(ratio));
            }
            row
        });
        table(&mut out, &header, rows);
    }
    idle(&mut out, results);
    if !results.churn.is_empty() {
        out.push_str("\n## Churn\n\nWorkers loop connect, GET the stream, read the response head, close, while 10 events/s are published; two rounds on one server. After: once settled (0 subscribers: every stream cleaned up).\n");
        let mib = |k: Option<u64>| k.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        let rows = results.churn.iter().filter_map(|r| {
            let s = r.report.steps.first()?;
            Some(vec![
                r.label.clone(),
                r.shape.clone().unwrap_or_default(),
                format!("{:.0}", s.cycles_per_sec),
                opt(s.server_cpu_us_per_cycle),
                mib(s.server_rss_base_kib),
                mib(s.server_rss_kib),
                mib(s.server_rss_after_kib),
                s.subscribers_after.map_or("-".into(), |n| n.to_string()),
                format!("{:?}", r.report.errors),
            ])
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
    let text = "Two tower-sse instances (`RedisStorage`) on one `redis-server`, the subscribers split over both, 10 events/s published on one.";
    loads(&mut out, "Cross-instance (Redis)", text, &results.redis);
    let text = "Every subscriber reads every topic. Write system calls: `syscw` of `/proc/PID/io` (socket writes and the runtime's wake-ups).";
    loads(&mut out, "High rate", text, &results.high_rate);
    batching(&mut out, &results.high_rate);
    let text = "tower-sse with `SseLayer::compression` (one codec, the crate's defaults); subscribers ask for it and decode every piece. Wire bytes: everything read from the sockets, HTTP/1.1 framing included.";
    loads(&mut out, "Compression", text, &results.compression);
    if !results.burst.is_empty() {
        out.push_str("\n## Burst\n\nReady events (~100 bytes each) streamed to one loopback client, the median of the runs.\n");
        let axum = results
            .burst
            .iter()
            .find(|b| b.0 == "axum")
            .map_or(f64::NAN, |b| b.1);
        let rows = results.burst.iter().map(|(stack, eps, mbs)| {
            vec![
                stack.clone(),
                format!("{eps:.0}"),
                format!("{mbs:.1}"),
                format!("{:.2}x", eps / axum),
            ]
        });
        table(&mut out, &["stack", "events/s", "MB/s", "vs axum"], rows);
    }
    if !results.encode.is_empty() {
        out.push_str("\n## Encode\n\nEvents per second from the caller's input to the frame's bytes, criterion's median (`benches/encode.rs`); `tower-sse/body`: through the body of `Sse`, as axum and warp are measured.\n");
        let sides = ["tower-sse", "tower-sse/body", "axum", "warp"];
        let mut cases: Vec<&String> = results.encode.iter().map(|e| &e.0).collect();
        cases.dedup();
        let rows = cases.into_iter().map(|case| {
            let eps = |side: &str| {
                results
                    .encode
                    .iter()
                    .find(|e| &e.0 == case && e.1 == side)
                    .map(|e| 1e9 / e.2)
            };
            let mut row = vec![case.clone()];
            row.extend(sides.map(|s| eps(s).map_or("-".into(), |x| format!("{x:.0}"))));
            row.push(
                eps("tower-sse")
                    .zip(eps("axum"))
                    .map_or("-".into(), |(a, b)| format!("{:.2}x", a / b)),
            );
            row
        });
        table(
            &mut out,
            &[
                "case",
                "tower-sse",
                "tower-sse/body",
                "axum",
                "warp",
                "tower-sse / axum",
            ],
            rows,
        );
    }
    out
}

fn idle(out: &mut String, results: &Results) {
    if results.idle.is_empty() {
        return;
    }
    out.push_str("\n## Idle memory\n\nOpen event streams on a topic nobody publishes on, HTTP/1.1, the default heartbeat (15 s; the raw floor sends none), all in one server process, held by several load generator processes: (RSS with the streams - RSS before) / streams. Then the server's CPU over a window with every stream open, and one event published on their topic.\n");
    let rows = results.idle.iter().flat_map(|i| {
        i.sizes.iter().map(|s| {
            let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
            vec![
                i.label.clone(),
                s.streams.to_string(),
                s.connected.to_string(),
                s.failed.to_string(),
                mib(i.rss_before_kib),
                mib(s.rss_kib),
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
    let rows = results.idle.iter().map(|i| {
        let delivered = i
            .delivered
            .map_or("not published".into(), |d| d.to_string());
        let open = i.sizes.last().map_or(0, |s| s.connected);
        vec![
            i.label.clone(),
            open.to_string(),
            format!("{:.1}", i.cpu_window_secs),
            format!("{:.3}", i.cpu_percent),
            delivered,
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

/// Each write delay beside axum and tower-sse without one; p99 bound: the no-delay p99
/// plus the delay.
fn batching(out: &mut String, runs: &[Run]) {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.delay_ms.is_some())
        .flat_map(|r| {
            r.report.steps.iter().map(move |s| {
                let same = |f: &dyn Fn(&Run) -> bool| {
                    step(runs, s.connections, |x| x.shape == r.shape && f(x))
                };
                let axum = same(&|x| x.stack == "axum").and_then(|a| a.server_cpu_us_per_event);
                let bound = same(&|x| x.delay_ms == Some(0))
                    .map(|n| ms(n.latency.p99_us) + r.delay_ms.unwrap_or(0) as f64);
                let p99 = ms(s.latency.p99_us);
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
        })
        .collect();
    if !rows.is_empty() {
        out.push_str("\n### Write batching (`SseLayer::batch_delay`)\n");
        let header = [
            "feed",
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
}

/// The targets of the issues, and what this run measured.
fn targets(out: &mut String, results: &Results) {
    let mut rows = Vec::new();
    for ours in results.idle.iter().filter(|i| i.label == "tower-sse") {
        for s in &ours.sizes {
            let kib = s.kib_per_stream;
            rows.push(vec![
                format!("idle memory at {} streams <= 3 KiB per stream", s.streams),
                format!("{kib:.2} KiB"),
                met(kib <= 3.0),
            ]);
        }
        let (streams, secs) = ours
            .sizes
            .iter()
            .fold((0, 0.0), |(_, t), s| (s.streams, t + s.connect_secs));
        let (cpu, rate) = (ours.cpu_percent, streams as f64 / secs);
        rows.push(vec![
            format!("heartbeats of {streams} idle streams <= 1 % of a core"),
            format!("{cpu:.3} %"),
            met(cpu <= 1.0),
        ]);
        rows.push(vec![
            format!("{streams} streams opened at >= 5,000 streams/s"),
            format!("{rate:.0} streams/s"),
            met(rate >= 5_000.0),
        ]);
        if let Some(d) = ours.delivered {
            rows.push(vec![
                format!("all {streams} streams receive a published event"),
                d.to_string(),
                met(d == streams),
            ]);
        }
    }
    let burst = |stack: &str| results.burst.iter().find(|b| b.0 == stack).map(|b| b.1);
    if let Some((ours, axum)) = burst("tower-sse").zip(burst("axum")) {
        rows.push(vec![
            "burst >= 4x axum".into(),
            format!("{:.2}x", ours / axum),
            met(ours >= 4.0 * axum),
        ]);
    }
    let ns = |case: &String, side: &str| {
        results
            .encode
            .iter()
            .find(|e| &e.0 == case && e.1 == side)
            .map(|e| e.2)
    };
    for case in results
        .encode
        .iter()
        .filter(|e| e.1 == "tower-sse")
        .map(|e| &e.0)
    {
        if let Some((ours, axum)) = ns(case, "tower-sse").zip(ns(case, "axum")) {
            rows.push(vec![
                format!("encode {case} >= 2x axum"),
                format!("{:.2}x", axum / ours),
                met(axum >= 2.0 * ours),
            ]);
        }
    }
    for run in results
        .high_rate
        .iter()
        .filter(|r| r.delay_ms == Some(20) && r.shape.as_deref() == Some("200 events/s"))
    {
        for s in &run.report.steps {
            let what = format!(
                "200 events/s, {} subscribers, 20 ms write delay",
                s.connections
            );
            if let Some(w) = s.server_syscw_per_event {
                rows.push(vec![
                    format!("{what}: write syscalls/event <= 0.4"),
                    format!("{w:.3}"),
                    met(w <= 0.4),
                ]);
            }
            if let Some(none) = step(&results.high_rate, s.connections, |r| {
                r.shape == run.shape && r.delay_ms == Some(0)
            }) {
                let (p99, bound) = (ms(s.latency.p99_us), ms(none.latency.p99_us) + 20.0);
                rows.push(vec![
                    format!("{what}: p99 <= no-delay p99 + 20 ms"),
                    format!("{} vs {} ms", num(p99), num(bound)),
                    met(p99 <= bound),
                ]);
            }
        }
    }
    let wire = |r: &Run| r.report.steps.first().and_then(|s| s.wire_bytes_per_event);
    let aircraft = results.compression.iter().filter(|r| {
        r.delay_ms == Some(0)
            && r.shape
                .as_deref()
                .is_some_and(|s| s.starts_with("aircraft"))
    });
    let identity = aircraft
        .clone()
        .find(|r| r.label == "identity")
        .and_then(wire);
    for run in aircraft.filter(|r| r.label != "identity") {
        if let Some((a, b)) = wire(run).zip(identity) {
            rows.push(vec![
                format!(
                    "aircraft feed, {}: wire bytes/event <= 1/4 of identity",
                    run.label
                ),
                format!("{a:.1} vs {b:.1}"),
                met(a <= b / 4.0),
            ]);
        }
    }
    if !rows.is_empty() {
        out.push_str("\n## Targets\n");
        table(out, &["target", "measured", ""], rows);
    }
}
