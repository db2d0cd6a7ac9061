//! The benchmark suite (the `bench-suite` binary; `benches/run.sh` runs it): every
//! section, tower-sse side by side with axum, warp and the floors, written to
//! `benches/results/results.json` and, made from that, `results.md`. Each server is a
//! child process (`fanout-server`); the load runs in this process or, for idle memory,
//! in `loadgen --hold` child processes. Burst and encode are criterion benches, run by
//! cargo with criterion's documented `--output-format bencher` (a `test <group>/<name>
//! ... bench: <median> ns/iter` line a benchmark), read from their output; at smoke size
//! in the dev profile (the tests' build) with criterion's shortest times.

mod child;
mod config;
mod idle;
mod sections;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::results::{Meta, Results};
use crate::{markdown, proc};
use config::root;
pub use config::{Args, Config, SECTIONS};

/// Runs the sections, writes `<stem>.json` and, from it, `<stem>.md`; returns the latter.
pub fn run(config: &Config) -> Result<String, String> {
    let mut git = std::process::Command::new("git");
    let git = git.args(["rev-parse", "--short", "HEAD"]);
    let head = git.current_dir(root()).output();
    let head = head.map(|o| o.stdout).unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut results = Results {
        meta: Meta {
            date: httpdate::fmt_http_date(SystemTime::now()),
            commit: String::from_utf8_lossy(&head).trim().into(),
            command: config.args.command.clone(),
            machine: format!("{cores} cores, {}", proc::cpu_model()),
            open_files: proc::open_files_limit(),
            load_before: proc::load_average(),
            load_after: String::new(),
        },
        ..Results::default()
    };
    sections::run(config, &mut results)?;
    if config.runs("idle") {
        results.idle = idle::run(config)?;
    }
    if config.runs("burst") {
        config.say("burst (criterion)");
        let events = config.burst_events;
        let env = [("BURST_EVENTS", events.to_string())];
        let runs = criterion("burst", config.args.smoke, &env)?;
        // Group `burst-nodelay`: the same stacks with TCP_NODELAY on the listener.
        for (group, stack, ns) in runs {
            let name = if group == "burst" {
                stack
            } else {
                format!("{stack} + TCP_NODELAY")
            };
            results.burst.push((name, events as f64 * 1e9 / ns));
        }
    }
    if config.runs("encode") {
        config.say("encode (criterion)");
        results.encode = criterion("encode", config.args.smoke, &[])?;
    }
    results.meta.load_after = proc::load_average();
    let args = &config.args;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root().join("benches/results"));
    let stem = args
        .only
        .as_ref()
        .map_or("results".into(), |o| format!("results-{}", o.join("-")));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = out.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| format!("{}: {e}", json.display()))?;
    render(&json)
}

/// Writes the Markdown of a results JSON next to it; returns it.
pub fn render(json: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    let results = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let (md, path) = (markdown::render(&results), json.with_extension("md"));
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(md)
}

/// A benchmark's group, name and nanoseconds per iteration.
type Bench = (String, String, f64);

/// Every benchmark of `bench`.
fn criterion(bench: &str, smoke: bool, env: &[(&str, String)]) -> Result<Vec<Bench>, String> {
    let quick = "--profile dev -- --warm-up-time 0.01 --measurement-time 0.05 --sample-size 10 \
                 --nresamples 1000";
    let tail = if smoke { quick } else { "--" };
    let args = format!("bench --all-features --bench {bench} {tail}");
    let args = format!("{args} --output-format bencher --noplot");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args.split_whitespace()).current_dir(root());
    let output = command.envs(env.iter().cloned()).output();
    let output = output.map_err(|e| format!("cargo bench: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("cargo {args}: {}\n{stderr}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().filter_map(parse).collect())
}

/// A `test <group>/<name> ... bench: <n> ns/iter (+/- <m>)` line.
fn parse(line: &str) -> Option<Bench> {
    let (name, rest) = line.strip_prefix("test ")?.split_once(" ... bench:")?;
    let (group, name) = name.trim().split_once('/')?;
    let mut words = rest.split_whitespace();
    let ns: f64 = words.next()?.replace(',', "").parse().ok()?;
    (words.next()? == "ns/iter").then(|| (group.into(), name.into(), ns))
}

#[test]
fn bencher_lines() {
    let line = "test position-json/tower-sse/body ... bench:       1,412 ns/iter (+/- 31)";
    assert_eq!(
        parse(line),
        Some(("position-json".into(), "tower-sse/body".into(), 1412.0))
    );
    assert_eq!(parse("allocations per event: 1"), None);
}
