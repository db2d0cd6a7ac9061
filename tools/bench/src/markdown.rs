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
        None => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string),
    }
}

/// Appends a table of `rows` (JSON objects): a column per `(heading, field)`; a field
/// of a nested object is `outer/inner`.
fn table(out: &mut String, columns: &[(&str, &str)], rows: &[Value]) {
    let headings: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let rule = "---|".repeat(columns.len());
    let _ = writeln!(out, "\n| {} |\n|{rule}", headings.join(" | "));
    for row in rows {
        let field = |f: &str| cell(f.split('/').fold(row, |value, key| &value[key]));
        let cells: Vec<String> = columns.iter().map(|(_, f)| field(f)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// `a / b` as `1.23x`; `null` unless both are numbers.
fn ratio(a: &Value, b: &Value) -> Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => json!(format!("{:.2}x", a / b)),
        _ => Value::Null,
    }
}

/// Each step of each run of a section as one object: the run's fields and the step's,
/// latency in milliseconds, and the ratios of server CPU and p99 to axum's in the same
/// feed and step.
fn steps(runs: &Value) -> Vec<Value> {
    let runs = runs.as_array().map_or(&[][..], |r| r);
    let mut rows = Vec::new();
    for run in runs {
        let same = |r: &&Value| r["stack"] == "axum" && r["shape"] == run["shape"];
        let axum = runs.iter().find(same);
        let steps = run["report"]["steps"].as_array().map_or(&[][..], |s| s);
        for (i, step) in steps.iter().enumerate() {
            let (mut row, axum) = (step.clone(), &axum.unwrap_or(&Value::Null)["report"]);
            let ms = |key: &str| json!(step["latency"][key].as_f64().map(|us| us / 1e3));
            (row["p50"], row["p99"], row["max"]) = (ms("p50_us"), ms("p99_us"), ms("max_us"));
            let cpu = "server_cpu_us_per_event";
            row["cpu_vs_axum"] = ratio(&step[cpu], &axum["steps"][i][cpu]);
            let p99 = |step: &Value| step["latency"]["p99_us"].clone();
            row["p99_vs_axum"] = ratio(&p99(step), &p99(&axum["steps"][i]));
            for key in ["label", "shape", "delay_ms"] {
                row[key] = run[key].clone();
            }
            row["errors"] = json!(run["report"]["errors"].to_string());
            rows.push(row);
        }
    }
    rows
}

/// The columns of a section of load generator runs.
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

/// The heading and the text of each section, one line each: `key|heading|text`.
const ABOUT: &str = "\
fanout|Fan-out|One topic, 10 events/s of a 140-byte JSON payload; of the rounds, the one of median server CPU per event.
redis|Cross-instance (Redis)|Two tower-sse instances (`RedisStorage`) on one `redis-server`, the subscribers split over both, 10 events/s published on one.
high_rate|High rate|Every subscriber reads every topic; tower-sse also with write delays (`SseLayer::batch_delay`; 0: none). Write system calls: `syscw` of `/proc/PID/io` (socket writes and the runtime's wake-ups).
compression|Compression|tower-sse with `SseLayer::compression` (one codec, the crate's defaults) and a write delay of 0 or 20 ms; subscribers ask for it and decode every piece. Wire bytes: all read from the sockets, HTTP/1.1 framing included.
idle|Idle memory|Open event streams on a topic nobody publishes on, HTTP/1.1, the default heartbeat (15 s; the raw floor sends none), in one server process, held by several load generator processes: (RSS with the streams - RSS before) / streams. With every stream open, the server's CPU over a window, and one event published on their topic: the streams that received it.
churn|Churn|Workers loop connect, GET the stream, read the response head, close, while 10 events/s are published; two rounds on one server. After: once settled (0 subscribers: every stream cleaned up).
burst|Burst|Ready events (~100 bytes) to one client (`benches/burst.rs`), criterion's median; each server's default socket options, then with `TCP_NODELAY` (against axum's of the same).
encode|Encode|Events per second from the caller's input to the frame's bytes, criterion's median (`benches/encode.rs`); `tower-sse/body`: through the body of `Sse`, as axum and warp are measured.";

/// Appends section `key` with a table of `rows`, if there are any.
fn section(out: &mut String, key: &str, columns: &[(&str, &str)], rows: &[Value]) {
    let about = ABOUT
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}|")));
    let (heading, text) = about.and_then(|a| a.split_once('|')).expect("a section");
    if !rows.is_empty() {
        let _ = writeln!(out, "\n## {heading}\n\n{text}");
        table(out, columns, rows);
    }
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
    let json = serde_json::to_value(results).unwrap_or_default();
    for key in ["fanout", "redis", "high_rate", "compression"] {
        let mut columns = LOADS.to_vec();
        if key == "high_rate" || key == "compression" {
            columns.insert(2, ("write delay (ms)", "delay_ms"));
        }
        if key == "compression" {
            columns[1].0 = "coding";
        }
        section(&mut out, key, &columns, &steps(&json[key]));
    }
    let mut idle = Vec::new();
    for server in json["idle"].as_array().into_iter().flatten() {
        for size in server["sizes"].as_array().into_iter().flatten() {
            let mut row = size.clone();
            row["label"] = server["label"].clone();
            row["before"] = json!(server["rss_before_kib"].as_f64().map(|kib| kib / 1024.0));
            row["mib"] = json!(size["rss_kib"].as_f64().map(|kib| kib / 1024.0));
            idle.push(row);
        }
    }
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
    section(&mut out, "idle", &columns, &idle);
    let columns = [
        ("server", "label"),
        ("CPU window (s)", "cpu_window_secs"),
        ("server CPU (% of a core)", "cpu_percent"),
        ("received the event", "delivered"),
        ("load generator processes", "processes"),
    ];
    let servers = json["idle"].as_array().map_or(&[][..], |s| s);
    if !servers.is_empty() {
        table(&mut out, &columns, servers);
    }
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
    section(&mut out, "churn", &columns, &steps(&json["churn"]));
    let burst = results.burst.iter().map(|(stack, e)| {
        // Against axum with the same socket options: the name's suffix after the stack.
        let suffix = stack.find(' ').map_or("", |at| &stack[at..]);
        let axum = json!(burst(results, &format!("axum{suffix}")));
        json!({ "stack": stack, "e": e, "x": ratio(&json!(e), &axum) })
    });
    let columns = [("stack", "stack"), ("events/s", "e"), ("vs axum", "x")];
    section(&mut out, "burst", &columns, &burst.collect::<Vec<_>>());
    let mut encode: Vec<Value> = Vec::new();
    for (case, side, ns) in &results.encode {
        if encode.last().is_none_or(|r| r["case"] != case.as_str()) {
            encode.push(json!({ "case": case }));
        }
        let row = encode.last_mut().expect("a row");
        row[side.replace('/', "_")] = json!(1e9 / ns);
        row["ratio"] = ratio(&row["tower-sse"], &row["axum"]);
    }
    let columns = [
        ("case", "case"),
        ("tower-sse", "tower-sse"),
        ("tower-sse/body", "tower-sse_body"),
        ("axum", "axum"),
        ("warp", "warp"),
        ("tower-sse / axum", "ratio"),
    ];
    section(&mut out, "encode", &columns, &encode);
    out
}

/// Burst's events per second of `stack`.
fn burst(results: &Results, stack: &str) -> Option<f64> {
    results.burst.iter().find(|b| b.0 == stack).map(|b| b.1)
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
            let target = format!("idle, {n} streams: <= 3 KiB each");
            row(target, format!("{kib:.2} KiB"), kib <= 3.0);
        }
        let n = ours.sizes.last().map_or(0, |s| s.streams);
        let rate = n as f64 / ours.sizes.iter().map(|s| s.connect_secs).sum::<f64>();
        let cpu = ours.cpu_percent;
        let target = format!("heartbeats of {n} idle streams <= 1 % of a core");
        row(target, format!("{cpu:.3} %"), cpu <= 1.0);
        let target = format!("{n} streams opened at >= 5,000/s");
        row(target, format!("{rate:.0}/s"), rate >= 5e3);
        if let Some(d) = ours.delivered {
            let target = format!("each of {n} streams gets the event");
            row(target, d.to_string(), d == n);
        }
    }
    if let Some((ours, axum)) = burst(results, "tower-sse").zip(burst(results, "axum")) {
        let ratio = format!("{:.2}x", ours / axum);
        row("burst >= 4x axum".into(), ratio, ours >= 4.0 * axum);
    }
    if !rows.is_empty() {
        out.push_str("\n## Targets\n");
        let columns = [("target", "t"), ("measured", "m"), ("", "ok")];
        table(out, &columns, &rows);
    }
}
