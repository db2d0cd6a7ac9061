//! The criterion sections: `benches/encode.rs` and `benches/burst.rs`, run by cargo with
//! criterion's documented `--output-format bencher` (a `test <group>/<name> ... bench:
//! <median> ns/iter` line a benchmark), read from their output. At smoke size they run
//! in the dev profile (the tests' build) with criterion's shortest times.

use std::process::Command;

/// The (group, name, nanoseconds per iteration) of every benchmark of `bench`.
pub(super) fn run(
    bench: &str,
    smoke: bool,
    env: &[(&str, String)],
) -> Result<Vec<(String, String, f64)>, String> {
    let quick = "--profile dev -- --warm-up-time 0.01 --measurement-time 0.05 --sample-size 10 \
                 --nresamples 1000";
    let args = format!(
        "bench --all-features --bench {bench} {}",
        if smoke { quick } else { "--" }
    );
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args(args.split_whitespace())
        .args(["--output-format", "bencher", "--noplot"]);
    let output = command
        .current_dir(super::config::root())
        .envs(env.iter().cloned())
        .output();
    let output = output.map_err(|e| format!("cargo bench: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("cargo {args}: {}\n{stderr}", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(parse)
        .collect())
}

/// A `test <group>/<name> ... bench: <n> ns/iter (+/- <m>)` line.
fn parse(line: &str) -> Option<(String, String, f64)> {
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
