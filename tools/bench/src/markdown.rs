//! The Markdown tables of a results document (`results.md`), made from its JSON alone:
//! each table's columns are the JSON fields it shows.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::results::Results;

/// Three significant digits, at most two decimals; a string as it is; `-` for none.
fn cell(value: &Value) -> String {
    match value.as_f64() {
        Some(_) if value.is_u64() || value.is_i64() => value.to_string(),
        Some(x) if x.abs() >= 100.0 || x == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
        None if value.is_null() => "-".into(),
        None => value.as_str().map_or_else(|| value.to_string(), str::to_string),
    }
}

/// Appends a table of `rows` (JSON objects): a column per `(heading, field)`; a field
/// of a nested object is `outer/inner`.
fn table(out: &mut String, columns: &[(&str, &str)], rows: &[Value]) {
    let headings: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let _ = writeln!(out, "\n| {} |\n|{}", headings.join(" | "), "---|".repeat(columns.len()));
    for row in rows {
        let cells = columns
            .iter()
            .map(|(_, field)| cell(field.split('/').fold(row, |value, key| &value[key])));
        let _ = writeln!(out, "| {} |", cells.collect::<Vec<_>>().join(" | "));
    }
}

/// Each step of each run of a section as one object: the run's fields and the step's,
/// latency in milliseconds, and the ratios of server CPU and p99 to axum's in the same
/// feed and step.
fn steps(runs: &Value) -> Vec<Value> {
    let runs = runs.as_array().cloned().unwrap_or_default();
    let axum = |run: &Value, i| {
        runs.iter()
            .find(|r| r["stack"] == "axum" && r["shape"] == run["shape"])
            .map(|r| r["report"]["steps"][i].clone())
    };
    let ratio = |a: &Value, b: Option<&Value>| match (a.as_f64(), b.and_then(Value::as_f64)) {
        (Some(a), Some(b)) if b > 0.0 => json!(format!("{:.2}x", a / b)),
        _ => Value::Null,
    };
    let mut rows = Vec::new();
    for run in &runs {
        for (i, step) in run["report"]["steps"].as_array().into_iter().flatten().enumerate() {
            let mut row = step.clone();
            for (key, us) in [("p50", "p50_us"), ("p99", "p99_us"), ("max", "max_us")] {
                row[key] = json!(step["latency"][us].as_f64().map(|us| us / 1e3));
            }
            let axum = axum(run, i);
            row["cpu_vs_axum"] = ratio(
                &step["server_cpu_us_per_event"],
                axum.as_ref().map(|a| &a["server_cpu_us_per_event"]),
            );
            row["p99_vs_axum"] =
                ratio(&step["latency"]["p99_us"], axum.as_ref().map(|a| &a["latency"]["p99_us"]));
            for key in ["label", "shape", "delay_ms"] {
                row[key] = run[key].clone();
            }
            row["errors"] = json!(format!("{}", run["report"]["errors"]));
            rows.push(row);
        }
    }
    rows
}

const LOADS: [(&str, &str); 15] = [
    ("feed", "shape"),
    ("stack", "label"),
    ("subscribers", "connections"),
    ("delivered/s", "events_per_sec"),
    ("lost", "lost"),
    ("failed", "failed"),
    ("server CPU/event (us)", "server_cpu_us_per_event"),
    ("vs axum", "cpu_vs_axum"),
    ("write syscalls/event", "server_syscw_per_event"),
    ("p50 (ms)", "p50"),
    ("p99 (ms)", "p99"),
    ("vs axum", "p99_vs_axum"),
    ("max (ms)", "max"),
    ("RSS/conn (KiB)", "server_rss_per_conn_kib"),
    ("wire bytes/event", "wire_bytes_per_event"),
];

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
    let json = serde_json::to_value(results).unwrap_or_default();
    let sections = [
        (
            "fanout",
            "Fan-out",
            "One topic, 10 events/s of a 140-byte JSON payload; of the rounds, the one of median server CPU per event.",
        ),
        (
            "redis",
            "Cross-instance (Redis)",
            "Two tower-sse instances (`RedisStorage`) on one `redis-server`, the subscribers split over both, 10 events/s published on one.",
        ),
        (
            "high_rate",
            "High rate",
            "Every subscriber reads every topic; tower-sse also with write delays (`SseLayer::batch_delay`; 0: none). Write system calls: `syscw` of `/proc/PID/io` (socket writes and the runtime's wake-ups).",
        ),
        (
            "compression",
            "Compression",
            "tower-sse with `SseLayer::compression` (one codec, the crate's defaults) and a write delay of 0 or 20 ms; subscribers ask for it and decode every piece. Wire bytes: all read from the sockets, HTTP/1.1 framing included.",
        ),
    ];
    for (key, title, text) in sections {
        let rows = steps(&json[key]);
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n\n{text}");
        let mut columns = LOADS.to_vec();
        if key == "high_rate" || key == "compression" {
            columns.insert(2, ("write delay (ms)", "delay_ms"));
        }
        if key == "compression" {
            columns[1].0 = "coding";
        }
        table(&mut out, &columns, &rows);
    }
    if !results.idle.is_empty() {
        out.push_str(
            "\n## Idle memory\n\nOpen event streams on a topic nobody publishes on, HTTP/1.1, \
             the default heartbeat (15 s; the raw floor sends none), in one server process, held \
             by several load generator processes: (RSS with the streams - RSS before) / \
             streams. With every stream open, the server's CPU over a window, and one event \
             published on their topic: the streams that received it.\n",
        );
        let rows: Vec<Value> = results
            .idle
            .iter()
            .flat_map(|idle| {
                let server =
                    json!({ "label": idle.label, "before": idle.rss_before_kib as f64 / 1024.0 });
                idle.sizes.iter().map(move |size| {
                    let mut row = serde_json::to_value(size).unwrap_or_default();
                    row["label"] = server["label"].clone();
                    row["before"] = server["before"].clone();
                    row["mib"] = json!(size.rss_kib as f64 / 1024.0);
                    row
                })
            })
            .collect();
        let columns = [
            ("server", "label"),
            ("streams", "streams"),
            ("open", "connected"),
            ("failed", "failed"),
            ("RSS before (MiB)", "before"),
            ("RSS with them (MiB)", "mib"),
            ("KiB per stream", "kib_per_stream"),
            ("new streams/s", "streams_per_sec"),
        ];
        table(&mut out, &columns, &rows);
        let columns = [
            ("server", "label"),
            ("CPU window (s)", "cpu_window_secs"),
            ("server CPU (% of a core)", "cpu_percent"),
            ("received the event", "delivered"),
            ("load generator processes", "processes"),
        ];
        table(&mut out, &columns, json["idle"].as_array().map_or(&[][..], |a| a));
    }
    if !results.churn.is_empty() {
        out.push_str("\n## Churn\n\nWorkers loop connect, GET the stream, read the response head, close, while 10 events/s are published; two rounds on one server. After: once settled (0 subscribers: every stream cleaned up).\n");
        let columns = [
            ("stack", "label"),
            ("round", "shape"),
            ("cycles/s", "cycles_per_sec"),
            ("server CPU/cycle (us)", "server_cpu_us_per_cycle"),
            ("RSS before (KiB)", "server_rss_base_kib"),
            ("RSS at end (KiB)", "server_rss_kib"),
            ("RSS after (KiB)", "server_rss_after_kib"),
            ("subscribers after", "subscribers_after"),
            ("errors", "errors"),
        ];
        table(&mut out, &columns, &steps(&json["churn"]));
    }
    if !results.burst.is_empty() {
        out.push_str("\n## Burst\n\nReady events (~100 bytes) to one client (`benches/burst.rs`), criterion's median; each server's default socket options, then with `TCP_NODELAY` (against axum's of the same).\n");
        let eps = |s: &str| results.burst.iter().find(|b| b.0 == s).map_or(f64::NAN, |b| b.1);
        let x = |s: &str, e: f64| {
            format!(
                "{:.2}x",
                e / eps(if s.ends_with("TCP_NODELAY") { "axum + TCP_NODELAY" } else { "axum" })
            )
        };
        let rows: Vec<Value> =
            results.burst.iter().map(|(s, e)| json!({ "s": s, "e": e, "x": x(s, *e) })).collect();
        table(&mut out, &[("stack", "s"), ("events/s", "e"), ("vs axum", "x")], &rows);
    }
    if !results.encode.is_empty() {
        out.push_str("\n## Encode\n\nEvents per second from the caller's input to the frame's bytes, criterion's median (`benches/encode.rs`); `tower-sse/body`: through the body of `Sse`, as axum and warp are measured.\n");
        let mut rows: Vec<Value> = Vec::new();
        for (case, side, ns) in &results.encode {
            if rows.last().is_none_or(|r| r["case"] != case.as_str()) {
                rows.push(json!({ "case": case }));
            }
            let row = rows.last_mut().expect("a row");
            row[side.replace('/', "_")] = json!(1e9 / ns);
            if let (Some(a), Some(b)) = (row["tower-sse"].as_f64(), row["axum"].as_f64()) {
                row["ratio"] = json!(format!("{:.2}x", a / b));
            }
        }
        let columns = [
            ("case", "case"),
            ("tower-sse", "tower-sse"),
            ("tower-sse/body", "tower-sse_body"),
            ("axum", "axum"),
            ("warp", "warp"),
            ("tower-sse / axum", "ratio"),
        ];
        table(&mut out, &columns, &rows);
    }
    out
}

/// The targets of issue 22 (idle streams) and burst's, and what this run measured; the
/// other sections' figures are in their tables.
fn targets(out: &mut String, results: &Results) {
    let mut rows = Vec::new();
    let mut row = |target: String, measured: String, met: bool| {
        let met = if met { "met" } else { "**missed**" };
        rows.push(json!({ "t": target, "m": measured, "ok": met }));
    };
    for ours in results.idle.iter().filter(|i| i.label == "tower-sse") {
        for s in &ours.sizes {
            let (n, kib) = (s.streams, s.kib_per_stream);
            row(format!("idle, {n} streams: <= 3 KiB each"), format!("{kib:.2} KiB"), kib <= 3.0);
        }
        let n = ours.sizes.last().map_or(0, |s| s.streams);
        let rate = n as f64 / ours.sizes.iter().map(|s| s.connect_secs).sum::<f64>();
        let cpu = ours.cpu_percent;
        row(
            format!("heartbeats of {n} idle streams <= 1 % of a core"),
            format!("{cpu:.3} %"),
            cpu <= 1.0,
        );
        row(format!("{n} streams opened at >= 5,000/s"), format!("{rate:.0}/s"), rate >= 5e3);
        if let Some(d) = ours.delivered {
            row(format!("each of {n} streams gets the event"), d.to_string(), d == n);
        }
    }
    let burst = |stack: &str| results.burst.iter().find(|b| b.0 == stack).map(|b| b.1);
    if let Some((ours, axum)) = burst("tower-sse").zip(burst("axum")) {
        row("burst >= 4x axum".into(), format!("{:.2}x", ours / axum), ours >= 4.0 * axum);
    }
    if !rows.is_empty() {
        out.push_str("\n## Targets\n");
        table(out, &[("target", "t"), ("measured", "m"), ("", "ok")], &rows);
    }
}
