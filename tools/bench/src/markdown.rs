//! The Markdown tables of a results document (`results.md`), made from the JSON alone.

use std::fmt::Write as _;

use crate::results::{Results, Run, Step};

/// Appends a table: the header's columns are separated by `|`.
fn table(out: &mut String, header: &str, rows: impl IntoIterator<Item = Vec<String>>) {
    let columns = header.split('|').count();
    let _ = writeln!(out, "\n| {header} |\n|{}", "---|".repeat(columns));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
}

/// Three significant digits, at most two decimals; `-` for none.
fn num(x: impl Into<Option<f64>>) -> String {
    match x.into() {
        None => "-".into(),
        Some(x) if x.abs() >= 100.0 || x == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    a.zip(b)
        .map_or("-".into(), |(a, b)| format!("{:.2}x", a / b))
}

/// The step of `connections` of the first run `pick` takes.
fn step<'a>(runs: &'a [Run], n: usize, pick: impl Fn(&Run) -> bool) -> Option<&'a Step> {
    let steps = &runs.iter().find(|r| pick(r))?.report.steps;
    steps.iter().find(|s| s.connections == n)
}

/// A table of load runs, a row per step, CPU and p99 also against axum's in the same
/// feed (if the section has axum).
fn loads(out: &mut String, title: &str, text: &str, runs: &[Run]) {
    if !runs.is_empty() {
        let _ = writeln!(out, "\n## {title}\n\n{text}");
    }
    let header = "feed|stack|subscribers|delivered/s|lost|failed|server CPU/event (us)|vs axum|\
                  write syscalls/event|p50 (ms)|p99 (ms)|vs axum|max (ms)|RSS/conn (KiB)|\
                  wire bytes/event|errors";
    let rows = runs.iter().flat_map(|r| {
        r.report.steps.iter().map(|s| {
            let axum = step(runs, s.connections, |x| {
                x.shape == r.shape && x.stack == "axum"
            });
            let p99 = |s: &Step| Some(ms(s.latency.p99_us));
            vec![
                r.shape.clone().unwrap_or_default(),
                r.label.clone(),
                s.connections.to_string(),
                format!("{:.0}", s.events_per_sec),
                s.lost.to_string(),
                s.failed.to_string(),
                num(s.server_cpu_us_per_event),
                ratio(
                    s.server_cpu_us_per_event,
                    axum.and_then(|a| a.server_cpu_us_per_event),
                ),
                s.server_syscw_per_event
                    .map_or("-".into(), |w| format!("{w:.3}")),
                num(ms(s.latency.p50_us)),
                num(ms(s.latency.p99_us)),
                ratio(p99(s), axum.and_then(p99)),
                num(ms(s.latency.max_us)),
                num(s.server_rss_per_conn_kib),
                num(s.wire_bytes_per_event),
                format!("{:?}", r.report.errors),
            ]
        })
    });
    table(out, header, rows);
}

/// The whole document.
pub fn render(results: &Results) -> String {
    let (mut out, meta) = (String::new(), &results.meta);
    let files = meta.open_files.map_or("?".into(), |n| n.to_string());
    let _ = write!(
        out,
        "# tower-sse benchmark results\n\n- date: {}; commit {}\n\
         - machine: {}; open files per process: {files}\n\
         - load average (1/5/15 min): {} before, {} after\n- command: `{}`\n\n\
         Servers and load generators are separate processes on the same cores (loopback), \
         every server on tokio with 2 workers; methods in `benches/README.md`. Compare ratios \
         within one run, not figures across runs.\n",
        meta.date, meta.commit, meta.machine, meta.load_before, meta.load_after, meta.command
    );
    targets(&mut out, results);
    let text = "One topic, 10 events/s of a 140-byte JSON payload; the median of the rounds.";
    loads(&mut out, "Fan-out", text, &results.fanout);
    idle(&mut out, results);
    churn(&mut out, &results.churn);
    let text = "Two tower-sse instances (`RedisStorage`) on one `redis-server`, the subscribers \
                split over both, 10 events/s published on one.";
    loads(&mut out, "Cross-instance (Redis)", text, &results.redis);
    let text = "Every subscriber reads every topic. Write system calls: `syscw` of \
                `/proc/PID/io` (socket writes and the runtime's wake-ups).";
    loads(&mut out, "High rate", text, &results.high_rate);
    batching(&mut out, &results.high_rate);
    let text = "tower-sse with `SseLayer::compression` (one codec, the crate's defaults) and a \
                write delay of 0 or 20 ms; subscribers ask for it and decode every piece. Wire \
                bytes: all read from the sockets, HTTP/1.1 framing included.";
    loads(&mut out, "Compression", text, &results.compression);
    if !results.burst.is_empty() {
        out.push_str("\n## Burst\n\nReady events (~100 bytes) to one client, the median run.\n");
        let axum = results.burst.iter().find(|b| b.0 == "axum").map(|b| b.1);
        let rows = results
            .burst
            .iter()
            .map(|(stack, eps)| vec![stack.clone(), num(*eps), ratio(Some(*eps), axum)]);
        table(&mut out, "stack|events/s|vs axum", rows);
    }
    if !results.encode.is_empty() {
        out.push_str(
            "\n## Encode\n\nEvents per second from the caller's input to the frame's bytes, \
             criterion's median (`benches/encode.rs`); `tower-sse/body`: through the body of \
             `Sse`, as axum and warp are measured.\n",
        );
        let mut cases: Vec<&String> = results.encode.iter().map(|e| &e.0).collect();
        cases.dedup();
        let rows = cases.into_iter().map(|case| {
            let eps = |side| results.encode.iter().find(|e| &e.0 == case && e.1 == side);
            let eps = |side| eps(side).map(|e| 1e9 / e.2);
            let mut row = vec![case.clone()];
            row.extend(["tower-sse", "tower-sse/body", "axum", "warp"].map(|s| num(eps(s))));
            row.push(ratio(eps("tower-sse"), eps("axum")));
            row
        });
        table(
            &mut out,
            "case|tower-sse|tower-sse/body|axum|warp|tower-sse / axum",
            rows,
        );
    }
    out
}

fn idle(out: &mut String, results: &Results) {
    if results.idle.is_empty() {
        return;
    }
    out.push_str(
        "\n## Idle memory\n\nOpen event streams on a topic nobody publishes on, HTTP/1.1, the \
         default heartbeat (15 s; the raw floor sends none), in one server process, held by \
         several load generator processes: (RSS with the streams - RSS before) / streams. \
         Then the server's CPU over a window with every stream open, and one event published \
         on their topic: the streams that received it.\n",
    );
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    let rows = results.idle.iter().flat_map(|i| {
        i.sizes.iter().map(move |s| {
            vec![
                i.label.clone(),
                s.streams.to_string(),
                s.failed.to_string(),
                mib(i.rss_before_kib),
                mib(s.rss_kib),
                format!("{:.2}", s.kib_per_stream),
                format!("{:.0}", s.streams_per_sec),
            ]
        })
    });
    let header = "server|streams|failed|RSS before (MiB)|RSS with them (MiB)|KiB per stream|\
                  new streams/s";
    table(out, header, rows);
    let rows = results.idle.iter().map(|i| {
        vec![
            i.label.clone(),
            i.sizes.last().map_or(0, |s| s.connected).to_string(),
            format!("{:.1}", i.cpu_window_secs),
            format!("{:.3}", i.cpu_percent),
            i.delivered
                .map_or("not published".into(), |d| d.to_string()),
            i.processes.to_string(),
        ]
    });
    let header = "server|streams|window (s)|server CPU (% of a core)|received the event|\
                  load generator processes";
    table(out, header, rows);
}

fn churn(out: &mut String, runs: &[Run]) {
    if runs.is_empty() {
        return;
    }
    out.push_str(
        "\n## Churn\n\nWorkers loop connect, GET the stream, read the response head, close, \
         while 10 events/s are published; two rounds on one server. After: once settled (0 \
         subscribers: every stream cleaned up).\n",
    );
    let mib = |k: Option<u64>| num(k.map(|k| k as f64 / 1024.0));
    let rows = runs.iter().filter_map(|r| {
        let s = r.report.steps.first()?;
        Some(vec![
            r.label.clone(),
            r.shape.clone().unwrap_or_default(),
            format!("{:.0}", s.cycles_per_sec),
            num(s.server_cpu_us_per_cycle),
            mib(s.server_rss_base_kib),
            mib(s.server_rss_kib),
            mib(s.server_rss_after_kib),
            s.subscribers_after.map_or("-".into(), |n| n.to_string()),
            format!("{:?}", r.report.errors),
        ])
    });
    let header = "stack|round|cycles/s|server CPU/cycle (us)|RSS before (MiB)|RSS at end (MiB)|\
                  RSS after (MiB)|subscribers after|errors";
    table(out, header, rows);
}

/// Each write delay; p99 bound: the no-delay p99 plus the delay.
fn batching(out: &mut String, runs: &[Run]) {
    let rows: Vec<Vec<String>> = (runs.iter().filter(|r| r.delay_ms.is_some()))
        .flat_map(|r| r.report.steps.iter().map(move |s| (r, s)))
        .map(|(r, s)| {
            let none = step(runs, s.connections, |x| {
                x.shape == r.shape && x.delay_ms == Some(0)
            });
            let bound = none.map(|n| ms(n.latency.p99_us) + r.delay_ms.unwrap_or(0) as f64);
            let p99 = ms(s.latency.p99_us);
            vec![
                r.shape.clone().unwrap_or_default(),
                s.connections.to_string(),
                r.delay_ms.unwrap_or(0).to_string(),
                num(s.server_cpu_us_per_event),
                s.server_syscw_per_event
                    .map_or("-".into(), |w| format!("{w:.3}")),
                num(p99),
                num(bound),
                if bound.is_some_and(|b| p99 <= b) {
                    "yes"
                } else {
                    "**no**"
                }
                .into(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str("\n### Write batching (`SseLayer::batch_delay`)\n");
        let header = "feed|subscribers|write delay (ms)|server CPU/event (us)|\
                      write syscalls/event|p99 (ms)|p99 bound (ms)|within";
        table(out, header, rows);
    }
}

/// The targets of issue 22 (idle streams) and burst's, and what this run measured; the
/// other sections' figures are in their tables.
fn targets(out: &mut String, results: &Results) {
    let mut rows = Vec::new();
    let mut row = |target: String, measured: String, met: bool| {
        rows.push(vec![
            target,
            measured,
            if met { "met" } else { "**missed**" }.into(),
        ]);
    };
    for ours in results.idle.iter().filter(|i| i.label == "tower-sse") {
        for s in &ours.sizes {
            let (n, kib) = (s.streams, s.kib_per_stream);
            row(
                format!("idle, {n} streams: <= 3 KiB each"),
                format!("{kib:.2} KiB"),
                kib <= 3.0,
            );
        }
        let n = ours.sizes.last().map_or(0, |s| s.streams);
        let rate = n as f64 / ours.sizes.iter().map(|s| s.connect_secs).sum::<f64>();
        let cpu = ours.cpu_percent;
        row(
            format!("heartbeats of {n} idle streams <= 1 % of a core"),
            format!("{cpu:.3} %"),
            cpu <= 1.0,
        );
        row(
            format!("{n} streams opened at >= 5,000/s"),
            format!("{rate:.0}/s"),
            rate >= 5e3,
        );
        if let Some(d) = ours.delivered {
            row(
                format!("each of {n} streams gets the event"),
                d.to_string(),
                d == n,
            );
        }
    }
    let burst = |stack: &str| results.burst.iter().find(|b| b.0 == stack).map(|b| b.1);
    if let Some((ours, axum)) = burst("tower-sse").zip(burst("axum")) {
        row(
            "burst >= 4x axum".into(),
            format!("{:.2}x", ours / axum),
            ours >= 4.0 * axum,
        );
    }
    if !rows.is_empty() {
        out.push_str("\n## Targets\n");
        table(out, "target|measured|", rows);
    }
}
