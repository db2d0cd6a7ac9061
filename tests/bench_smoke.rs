//! Keeps the benchmark tools (the `tower-sse-bench` crate in `tools/bench`) from rotting:
//! cargo builds their binaries, as in a fresh clone; then the whole suite runs at smoke
//! size (every fan-out server as a child process, the load generator, high rate, burst,
//! the report files), and a fan-out server and the load generator run on their own
//! command lines. Counts only, no timing assertions.

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

    let checks = results["check"].as_array().unwrap();
    assert_eq!(checks.len(), 3);
    for check in checks {
        assert_eq!(check["complete"], check["subscribers"], "{check}");
        assert_eq!(check["errors"], serde_json::json!({}), "{check}");
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
    ] {
        assert!(md.contains(text), "{text}: {md}");
    }
    let svg = std::fs::read_to_string(out.join("fanout.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    let _ = std::fs::remove_dir_all(out);
}

/// A fan-out server and the load generator on their command lines: every subscriber
/// receives events 1..=20 of the topic, in order.
#[test]
fn loadgen_against_a_fanout_server() {
    let mut server = Command::new(tool("fanout-server"))
        .args([
            "--stack",
            "tower-sse",
            "--rate",
            "100",
            "--events",
            "20",
            "--start-after",
            "5",
        ])
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
