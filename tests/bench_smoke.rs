//! Keeps the benchmark tools (`tools/bench`, and the criterion benches the suite runs)
//! from rotting: cargo builds them as in a fresh clone, then every section of the suite
//! runs at smoke size, a fan-out server and the load generator run on their own command
//! lines (a compressed stream too), and the idle section measures a server it did not
//! start. Counts only: no timing or size assertions. Every wait has a deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::channel;
use std::time::Duration;

use serde_json::{Value, json};

/// The tools' executables by name, built by cargo once per test process.
fn tool(name: &str) -> PathBuf {
    static TOOLS: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.current_dir(env!("CARGO_MANIFEST_DIR"));
        cargo.args([
            "build",
            "-p",
            "tower-sse-bench",
            "--bins",
            "--message-format=json",
        ]);
        if cfg!(feature = "redis") {
            cargo.arg("--features=redis");
        }
        let output = finish(cargo.stderr(Stdio::inherit()), Duration::from_secs(900));
        assert!(output.status.success(), "cargo could not build the tools");
        let messages = String::from_utf8_lossy(&output.stdout).into_owned();
        let artifacts = messages
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok());
        let artifact = |m: Value| {
            Some((
                m["target"]["name"].as_str()?.into(),
                m["executable"].as_str()?.into(),
            ))
        };
        artifacts.filter_map(artifact).collect()
    });
    let found = tools.iter().find(|(n, _)| n == name);
    found
        .unwrap_or_else(|| panic!("cargo built no {name}"))
        .1
        .clone()
}

/// Runs `command` to its end, within `deadline` (else kills it and fails).
fn finish(command: &mut Command, deadline: Duration) -> Output {
    let child = command.stdout(Stdio::piped()).spawn().expect("a process");
    let pid = child.id();
    let (tx, rx) = channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(deadline) {
        Ok(output) => output.expect("its output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{command:?} did not finish in {deadline:?}");
        }
    }
}

/// A child process, killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `fanout-server` with `args`: the process, the URLs of its streams of every topic and
/// of the idle topic.
fn fanout_server(args: &[&str]) -> (Killed, String, String) {
    let mut child = Command::new(tool("fanout-server"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("LISTENING within a minute");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"LISTENING"), "{line}");
    (Killed(child), words[1].to_string(), words[2].to_string())
}

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tower-sse-{name}-{}", std::process::id()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The counts of every step of `run`: connected, failed, lost, reordered.
fn counts(run: &Value) -> Vec<[u64; 4]> {
    let steps = run["report"]["steps"].as_array().unwrap();
    let count = |s: &Value, k: &str| s[k].as_u64().unwrap();
    steps
        .iter()
        .map(|s| ["connected", "failed", "lost", "reordered"].map(|k| count(s, k)))
        .collect()
}

fn every(results: &Value, section: &str) -> Vec<Value> {
    results[section].as_array().unwrap().clone()
}

/// The whole suite at smoke size: every stack's server delivers to every subscriber with
/// nothing lost; every section reports; the files are written, the Markdown from the JSON.
#[test]
#[cfg_attr(
    not(feature = "test-redis"),
    ignore = "needs redis-server: cargo test --features test-redis"
)]
fn suite_smoke_every_section() {
    let out = out_dir("suite-smoke");
    let mut suite = Command::new(tool("bench-suite"));
    let output = finish(
        suite.args(["--smoke", "--out"]).arg(&out),
        Duration::from_secs(600),
    );
    assert!(
        output.status.success(),
        "bench-suite --smoke: {}",
        output.status
    );
    let results = read_json(&out.join("results.json"));
    let stacks = ["tower-sse", "axum", "warp", "hyper-floor", "raw-floor"];
    let fanout = every(&results, "fanout");
    assert_eq!(
        fanout
            .iter()
            .map(|r| r["stack"].as_str().unwrap())
            .collect::<Vec<_>>(),
        stacks
    );
    for run in fanout.iter().chain(&every(&results, "high_rate")) {
        assert_eq!(counts(run), [[20, 0, 0, 0]], "{run}");
        assert!(
            run["report"]["steps"][0]["events"].as_u64() > Some(0),
            "{run}"
        );
        assert_eq!(run["report"]["errors"], json!({}), "{run}");
    }
    // Two shapes: every stack, then tower-sse with three write delays.
    assert_eq!(every(&results, "high_rate").len(), 2 * (5 + 3));
    // Two feeds, two write delays, identity and four codecs.
    let compression = every(&results, "compression");
    assert_eq!(compression.len(), 2 * 2 * 5);
    for run in &compression {
        assert_eq!(counts(run), [[10, 0, 0, 0]], "{run}");
        assert!(
            run["report"]["steps"][0]["events"].as_u64() > Some(0),
            "{run}"
        );
    }
    let churn = every(&results, "churn");
    assert_eq!(churn.len(), 3 * 2);
    for run in &churn {
        let step = &run["report"]["steps"][0];
        assert_eq!(step["subscribers_after"], 0, "cleaned up: {run}");
        assert!(step["cycles_per_sec"].as_f64() > Some(0.0), "{run}");
    }
    let redis_server = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if cfg!(feature = "redis") && redis_server {
        assert_eq!(counts(&results["redis"][0]), [[20, 0, 0, 0]]);
    }
    let idle = every(&results, "idle");
    assert_eq!(
        idle.iter()
            .map(|i| i["label"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["tower-sse", "axum", "raw-floor"]
    );
    for server in &idle {
        let sizes = server["sizes"].as_array().unwrap();
        let open: Vec<_> = sizes
            .iter()
            .map(|s| (s["streams"].as_u64(), s["connected"].as_u64()))
            .collect();
        assert_eq!(
            open,
            [(Some(10), Some(10)), (Some(30), Some(30))],
            "{server}"
        );
        // Two load generator processes, and every stream received the published event.
        assert_eq!(
            (&server["processes"], &server["delivered"]),
            (&json!(2), &json!(30)),
            "{server}"
        );
    }
    let burst: Vec<&str> = results["burst"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[0].as_str().unwrap())
        .collect();
    // Each server's default socket options, then with TCP_NODELAY.
    let stacks = ["tower-sse", "axum", "warp", "ceiling"];
    let nodelay = stacks.map(|s| format!("{s} + TCP_NODELAY"));
    let expected: Vec<&str> = stacks
        .into_iter()
        .chain(nodelay.iter().map(|s| &s[..]))
        .collect();
    assert_eq!(burst, expected);
    assert_eq!(
        results["encode"].as_array().unwrap().len(),
        4 * 4,
        "four cases, four sides"
    );

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for heading in [
        "## Targets",
        "## Fan-out",
        "## Idle memory",
        "## Churn",
        "## High rate",
        "## Compression",
        "## Burst",
        "## Encode",
    ] {
        assert!(md.contains(heading), "{heading}: {md}");
    }
    std::fs::remove_file(out.join("results.md")).unwrap();
    let mut render = Command::new(tool("bench-suite"));
    let output = finish(
        render.arg("--render").arg(out.join("results.json")),
        Duration::from_secs(60),
    );
    assert!(output.status.success());
    assert_eq!(
        std::fs::read_to_string(out.join("results.md")).unwrap(),
        md,
        "made from the JSON alone"
    );
    let _ = std::fs::remove_dir_all(out);
}

/// A fan-out server and the load generator on their command lines, plain and with a
/// compressed stream: every subscriber receives events, none lost.
#[test]
fn loadgen_against_a_fanout_server() {
    for coding in [None, Some("br")] {
        let mut args = vec!["--stack", "tower-sse", "--feed", "sensors", "--rate", "50"];
        args.extend(coding.iter().flat_map(|c| ["--compression", c]));
        let (server, url, _) = fanout_server(&args);
        let pid = server.0.id().to_string();
        let mut loadgen = Command::new(tool("loadgen"));
        loadgen.args([
            "--url",
            &url,
            "-n",
            "5",
            "--settle",
            "0.1",
            "--duration",
            "0.5",
            "--pid",
            &pid,
            "-q",
        ]);
        loadgen.args(coding.iter().flat_map(|c| ["--accept-encoding", c]));
        let output = finish(&mut loadgen, Duration::from_secs(120));
        assert!(
            output.status.success(),
            "loadgen {coding:?}: {}",
            output.status
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            counts(&json!({ "report": report })),
            [[5, 0, 0, 0]],
            "{coding:?}: {report}"
        );
        assert!(
            report["steps"][0]["events"].as_u64() > Some(0),
            "{coding:?}: {report}"
        );
    }
}

/// The idle section against a server it did not start (`--idle-url`, `--idle-pid`), as
/// it measures an example binary: every stream opens; nothing is published.
#[test]
fn idle_memory_of_a_running_server() {
    let (server, _, url) = fanout_server(&["--stack", "tower-sse", "--rate", "0"]);
    let out = out_dir("idle-url");
    let mut suite = Command::new(tool("bench-suite"));
    suite.args(["--smoke", "--only", "idle", "--idle-url", &url]);
    suite
        .args(["--idle-pid", &server.0.id().to_string(), "--out"])
        .arg(&out);
    let output = finish(&mut suite, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "bench-suite --only idle --idle-url: {}",
        output.status
    );
    let idle = &read_json(&out.join("results-idle.json"))["idle"][0];
    let connected: Vec<_> = idle["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["connected"].as_u64())
        .collect();
    assert_eq!(connected, [Some(10), Some(30)], "{idle}");
    assert_eq!(idle["delivered"], Value::Null, "{idle}");
    let _ = std::fs::remove_dir_all(out);
}
