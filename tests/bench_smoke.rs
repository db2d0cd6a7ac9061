//! Keeps the benchmark tools (the `tower-sse-bench` crate in `tools/bench`) from rotting:
//! cargo builds their binaries, as in a fresh clone; then the whole suite runs at smoke
//! size (every fan-out server as a child process, the load generator, high rate with
//! every write delay, batching's cost with idle streams, burst, the report files), the
//! opt-in sections too (compression on the wire, memory per compressed stream, each
//! event compressed alone), and a fan-out server and the load generator run on their own
//! command lines, plain and compressed. Counts only, no timing or size assertions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The tools' executables by name, built by cargo once per test process.
fn tool(name: &str) -> &'static Path {
    static TOOLS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--package=tower-sse-bench",
            "--bins",
            "--message-format=json-render-diagnostics",
        ]);
        if cfg!(feature = "redis") {
            cargo.arg("--features=redis");
        }
        let output = cargo.stderr(Stdio::inherit()).output().expect("cargo");
        assert!(output.status.success(), "cargo could not build the tools");
        let messages = String::from_utf8_lossy(&output.stdout);
        let artifact = |message: Value| {
            let name = message["target"]["name"].as_str()?.to_string();
            Some((name, PathBuf::from(message["executable"].as_str()?)))
        };
        let lines = messages
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok());
        lines.filter_map(artifact).collect()
    });
    tools
        .get(name)
        .unwrap_or_else(|| panic!("cargo built no {name}"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The whole suite at smoke size: every stack's server delivers every event to every
/// subscriber, in order; every section reports; the files are written.
#[test]
fn suite_smoke_every_subscriber_gets_every_event() {
    let out = std::env::temp_dir().join(format!("tower-sse-suite-smoke-{}", std::process::id()));
    let status = Command::new(tool("bench-suite"))
        .args(["--smoke", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bench-suite --smoke: {status}");
    let results = read_json(&out.join("results.json"));

    // Every stack, then tower-sse with a write delay, each codec, and both.
    let checks = results["check"].as_array().unwrap();
    assert_eq!(checks.len(), 3 + 1 + 4 * 2);
    for check in checks {
        assert_eq!(check["complete"], check["subscribers"], "{check}");
        assert_eq!(check["errors"], serde_json::json!({}), "{check}");
    }
    let labels: Vec<&str> = checks
        .iter()
        .map(|c| c["stack"].as_str().unwrap())
        .collect();
    for label in [
        "tower-sse, write delay 20 ms",
        "tower-sse, br",
        "tower-sse, zstd, write delay 20 ms",
    ] {
        assert!(labels.contains(&label), "{label}: {labels:?}");
    }
    let stacks = ["tower-sse", "axum", "warp", "hyper-floor", "raw-floor"];
    for stack in stacks {
        let step = &results["fanout"][stack]["steps"][0];
        let counts = [
            &step["connected"],
            &step["failed"],
            &step["lost"],
            &step["reordered"],
        ];
        assert_eq!(
            counts.map(|c| c.as_u64()),
            [20, 0, 0, 0].map(Some),
            "{stack}: {step}"
        );
        // Every event carries its publish time (the two counters are read a moment apart
        // at the window's ends, so they may differ by an event or a few).
        assert!(step["events"].as_u64() > Some(0), "{stack}");
        assert!(step["latency"]["count"].as_u64() > Some(0), "{stack}");
        for figure in [
            "server_cpu_us_per_event",
            "server_rss_per_conn_kib",
            "server_syscw_per_event",
        ] {
            assert!(step[figure].is_number(), "{stack}: {figure}");
        }
        let idle = &results["idle"][stack]["steps"][0];
        let counts = [&idle["connected"], &idle["failed"], &idle["events"]];
        assert_eq!(
            counts.map(|c| c.as_u64()),
            [20, 0, 0].map(Some),
            "{stack}: {idle}"
        );

        for shape in results["high_rate"].as_object().unwrap().values() {
            let step = &shape[stack]["steps"][0];
            assert_eq!(step["failed"], 0, "{stack}: {step}");
            assert_eq!(step["lost"], 0, "{stack}: {step}");
            assert!(step["events"].as_u64() > Some(0), "{stack}");
            assert!(step["server_syscw_per_event"].is_number(), "{stack}");
        }
    }
    assert_eq!(results["high_rate"].as_object().unwrap().len(), 2);
    // tower-sse with every write delay, on both shapes: every event, in order.
    for (shape, stacks) in results["high_rate"].as_object().unwrap() {
        for delay in [0, 5, 20, 50] {
            let label = format!("tower-sse (write delay {delay} ms)");
            let step = &stacks[&label]["steps"][0];
            let counts = [
                &step["connected"],
                &step["failed"],
                &step["lost"],
                &step["reordered"],
            ];
            assert_eq!(
                counts.map(|c| c.as_u64()),
                [20, 0, 0, 0].map(Some),
                "{shape}, {label}: {step}"
            );
            assert!(step["events"].as_u64() > Some(0), "{shape}, {label}");
        }
    }
    // Batching's cost: idle streams alone, active ones alone, both; delay 0 and 20 ms.
    let runs = results["batch_idle"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for run in runs {
        let step = &run["report"]["steps"][0];
        let streams = run["idle"].as_u64().unwrap() + run["active"].as_u64().unwrap();
        let counts = [&step["connected"], &step["failed"], &step["lost"]];
        assert_eq!(
            counts.map(|c| c.as_u64()),
            [Some(streams), Some(0), Some(0)],
            "{run}"
        );
        let active = run["active"].as_u64() > Some(0);
        assert_eq!(step["events"].as_u64() > Some(0), active, "{run}");
        assert!(step["server_cpu_ns"].is_number(), "{run}");
    }
    for stack in &stacks[..3] {
        let rounds = results["churn"][stack].as_array().unwrap();
        assert_eq!(rounds.len(), 2, "{stack}: two rounds");
        for round in rounds {
            assert!(round["steps"][0]["cycles"].as_u64() > Some(0), "{stack}");
            assert_eq!(
                round["steps"][0]["server_subscribers"], 0,
                "{stack}: cleaned up"
            );
            assert_eq!(round["errors"], serde_json::json!({}), "{stack}");
        }
    }
    if cfg!(feature = "redis") {
        let step = &results["redis"]["steps"][0];
        let counts = [&step["connected"], &step["failed"], &step["lost"]];
        assert_eq!(counts.map(|c| c.as_u64()), [20, 0, 0].map(Some), "{step}");
        assert!(step["events"].as_u64() > Some(0));
    }
    let burst: Vec<&str> = results["burst"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap())
        .collect();
    assert_eq!(
        burst,
        ["tower-sse", "axum", "warp", "ceiling (pre-encoded)"]
    );

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for text in [
        "## Fan-out",
        "| tower-sse | 20 |",
        "## High rate",
        "| raw-floor | 20 |",
        "### Write batching",
        "write syscalls/event with a 20 ms write delay <= 0.4",
        "## Batching's cost with idle streams",
    ] {
        assert!(md.contains(text), "{text}: {md}");
    }
    let svg = std::fs::read_to_string(out.join("fanout.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    let _ = std::fs::remove_dir_all(out);
}

/// The opt-in sections at smoke size: compression on the wire (every feed, delay and
/// coding delivers every event in order, decoded), memory per compressed stream, and
/// the offline comparison; written to their own files, leaving the suite's alone.
#[test]
fn suite_smoke_compression_sections() {
    let out = std::env::temp_dir().join(format!(
        "tower-sse-suite-smoke-compression-{}",
        std::process::id()
    ));
    let status = Command::new(tool("bench-suite"))
        .args(["--smoke", "--only", "compression,memory,blocks", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "bench-suite --smoke --only ...: {status}");
    assert!(!out.join("results.json").exists());
    assert!(!out.join("fanout.svg").exists());
    let results = read_json(&out.join("results-compression-memory-blocks.json"));

    let runs = results["compression"].as_array().unwrap();
    // Three feeds (aircraft together and spread, sensors), two write delays, identity
    // and four codecs.
    assert_eq!(runs.len(), 3 * 2 * 5);
    for run in runs {
        let step = &run["report"]["steps"][0];
        let counts = [
            &step["connected"],
            &step["failed"],
            &step["lost"],
            &step["reordered"],
        ];
        assert_eq!(counts.map(|c| c.as_u64()), [10, 0, 0, 0].map(Some), "{run}");
        assert_eq!(run["report"]["errors"], serde_json::json!({}), "{run}");
        assert!(step["events"].as_u64() > Some(0), "{run}");
        assert!(step["latency"]["count"].as_u64() > Some(0), "{run}");
        for figure in [
            "wire_bytes_per_event",
            "body_bytes_per_event",
            "decoded_bytes_per_event",
            "server_cpu_us_per_event",
        ] {
            assert!(step[figure].is_number(), "{figure}: {run}");
        }
    }

    let runs = results["memory"].as_array().unwrap();
    // Identity and four codecs at two settings; idle and active.
    assert_eq!(runs.len(), (1 + 4 * 2) * 2);
    for run in runs {
        let steps = run["report"]["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{run}");
        for step in steps {
            assert_eq!(step["connected"], step["connections"], "{run}");
            assert_eq!(step["failed"], 0, "{run}");
            assert_eq!(step["lost"], 0, "{run}");
            assert!(step["server_rss_per_conn_kib"].is_number(), "{run}");
        }
        assert_eq!(run["report"]["errors"], serde_json::json!({}), "{run}");
    }

    let blocks = &results["blocks"];
    assert_eq!(blocks["events"], 320, "{blocks}");
    let rows = blocks["rows"].as_array().unwrap();
    // Four codecs, two settings, four approaches.
    assert_eq!(rows.len(), 4 * 2 * 4);
    for row in rows {
        assert!(row["bytes"].as_u64() > Some(0), "{row}");
    }

    let md = std::fs::read_to_string(out.join("results-compression-memory-blocks.md")).unwrap();
    for text in [
        "## Compression on the wire",
        "bytes on the wire/event <= 1/4 of identity",
        "## Memory per compressed stream",
        "## A compressor per stream or each event compressed alone",
    ] {
        assert!(md.contains(text), "{text}: {md}");
    }
    let _ = std::fs::remove_dir_all(out);
}

/// Starts `fanout-server` with `args`; returns it and its event stream address.
fn fanout_server(args: &[&str]) -> (std::process::Child, String) {
    let mut server = Command::new(tool("fanout-server"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let listening =
        lines.find_map(|line| line.unwrap().strip_prefix("LISTENING ").map(str::to_string));
    let address = listening
        .expect("the server's addresses")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (server, address)
}

/// A compressed stream on the command lines: `fanout-server --compression br` with the
/// sensors feed, `loadgen --accept-encoding br`: every subscriber decodes events 1..=20
/// in order.
#[test]
fn loadgen_decodes_a_compressed_stream() {
    let (mut server, address) = fanout_server(&[
        "--stack",
        "tower-sse",
        "--feed",
        "sensors",
        "--rate",
        "100",
        "--events",
        "20",
        "--start-after",
        "5",
        "--compression",
        "br",
        "--compression-level",
        "1",
        "--compression-window",
        "1024",
    ]);
    let json =
        std::env::temp_dir().join(format!("tower-sse-loadgen-br-{}.json", std::process::id()));
    let status = Command::new(tool("loadgen"))
        .args([
            "--url",
            &format!("http://{address}/events"),
            "-n",
            "5",
            "--until-seq",
            "20",
            "--accept-encoding",
            "br",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "loadgen: {status}");
    let report = read_json(&json);
    assert_eq!(report["complete"], 5, "{report}");
    assert_eq!(report["steps"][0]["events"], 100, "{report}");
    let _ = std::fs::remove_file(json);
}

/// A fan-out server and the load generator on their command lines: every subscriber
/// receives events 1..=20 of the topic, in order.
#[test]
fn loadgen_against_a_fanout_server() {
    let (mut server, address) = fanout_server(&[
        "--stack",
        "tower-sse",
        "--rate",
        "100",
        "--events",
        "20",
        "--start-after",
        "5",
    ]);
    let json = std::env::temp_dir().join(format!("tower-sse-loadgen-{}.json", std::process::id()));
    let status = Command::new(tool("loadgen"))
        .args([
            "--url",
            &format!("http://{address}/events"),
            "-n",
            "5",
            "--until-seq",
            "20",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "loadgen: {status}");
    let report = read_json(&json);
    assert_eq!(report["complete"], 5, "{report}");
    assert_eq!(report["steps"][0]["events"], 100, "{report}");
    let _ = std::fs::remove_file(json);
}
