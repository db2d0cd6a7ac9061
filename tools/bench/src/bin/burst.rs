//! Burst on the command line: every stack `--runs` times, interleaved, after one untimed
//! warm-up each; prints every run and the medians. See `tower_sse_bench::burst`.

use clap::Parser;
use tower_sse_bench::burst::{self, Options};

fn main() {
    let options = Options::parse();
    let rt = burst::runtime();
    println!(
        "burst: {} events of ~{} bytes, {} runs per stack, interleaved; server: hyper http1, \
         tokio multi-thread 2 workers; client: hyper's, same process",
        options.events,
        burst::expected_bytes(burst::Stack::Axum, options.events) / options.events,
        options.runs,
    );
    let runs = burst::bench(&rt, &options, |run| {
        let (name, secs) = (run.stack.name(), run.elapsed.as_secs_f64());
        let (eps, mbs) = (run.events_per_sec(), run.mb_per_sec());
        println!(
            "  run {name:<22} {secs:>8.3} s {eps:>12.0} events/s {mbs:>8.1} MB/s (heartbeats {})",
            run.heartbeats
        );
    })
    .unwrap_or_else(|err| {
        eprintln!("burst: {err}");
        std::process::exit(1)
    });
    let axum = runs
        .iter()
        .find(|(s, _)| *s == burst::Stack::Axum)
        .map(|(_, r)| burst::median(r).events_per_sec());
    println!(
        "\n{:<22} {:>14} {:>10} {:>12}",
        "stack (median)", "events/s", "MB/s", "vs axum"
    );
    for (stack, stack_runs) in &runs {
        let run = burst::median(stack_runs);
        let vs = axum.map_or("-".into(), |a| format!("{:.2}x", run.events_per_sec() / a));
        println!(
            "{:<22} {:>14.0} {:>10.1} {vs:>12}",
            stack.name(),
            run.events_per_sec(),
            run.mb_per_sec()
        );
    }
}
