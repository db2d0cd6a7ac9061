//! Encode: criterion's `benches/encode.rs`, run by cargo with criterion's documented
//! `--output-format bencher` (one `test <case>/<side> ... bench: <median> ns/iter` line
//! per benchmark), read from its output. At smoke size it runs in the dev profile (the
//! tests' build) with criterion's shortest times.

use std::process::Command;

use super::{Config, root};
use crate::results::Encode;

pub(super) fn run(config: &Config) -> Result<Vec<Encode>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root())
        .args(["bench", "--all-features", "--bench", "encode"]);
    if config.smoke {
        command.args(["--profile", "dev"]);
    }
    command.args(["--", "--output-format", "bencher"]);
    if config.smoke {
        command.args([
            "--warm-up-time",
            "0.01",
            "--measurement-time",
            "0.05",
            "--sample-size",
            "10",
        ]);
    }
    let output = command.output().map_err(|e| format!("cargo bench: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "cargo bench --bench encode: {}\n{stderr}",
            output.status
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&output.stdout)))
}

/// The `test <case>/<side> ... bench: <n> ns/iter (+/- <m>)` lines of `output`.
fn parse(output: &str) -> Vec<Encode> {
    let line = |line: &str| {
        let (name, rest) = line.strip_prefix("test ")?.split_once(" ... bench:")?;
        let (case, bench) = name.trim().split_once('/')?;
        let ns = rest
            .split_whitespace()
            .next()?
            .replace(',', "")
            .parse::<f64>()
            .ok()?;
        let unit = rest.split_whitespace().nth(1)?;
        let scale = match unit {
            "ns/iter" => 1.0,
            "us/iter" | "µs/iter" => 1e3,
            "ms/iter" => 1e6,
            _ => return None,
        };
        let ns_per_event = ns * scale;
        Some(Encode {
            case: case.into(),
            bench: bench.into(),
            ns_per_event,
        })
    };
    output.lines().filter_map(line).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn bencher_lines() {
        let output = "alloc line\ntest position-json/tower-sse/body ... bench:       1,412 ns/iter (+/- 31)\n";
        let parsed = super::parse(output);
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            (parsed[0].case.as_str(), parsed[0].bench.as_str()),
            ("position-json", "tower-sse/body")
        );
        assert_eq!(parsed[0].ns_per_event, 1412.0);
    }
}
