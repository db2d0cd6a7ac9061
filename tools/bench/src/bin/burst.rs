//! Burst on the command line: see `tower_sse_bench::burst`.

use clap::Parser;
use tower_sse_bench::burst::{self, Stack};

/// Ready events streamed to one client, per stack.
#[derive(Parser)]
struct Args {
    /// Events per run.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Timed runs per stack (the median is printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The stacks (default: all).
    #[arg(long = "stack", value_enum, value_delimiter = ',')]
    stacks: Vec<Stack>,
}

fn main() {
    let args = Args::parse();
    let stacks = if args.stacks.is_empty() {
        Stack::ALL.to_vec()
    } else {
        args.stacks
    };
    let runs = burst::bench(&stacks, args.events, args.runs).unwrap_or_else(|err| {
        eprintln!("burst: {err}");
        std::process::exit(1)
    });
    let axum = runs
        .iter()
        .find(|(s, _)| *s == Stack::Axum)
        .map(|(_, r)| r.events_per_sec());
    println!(
        "{:<22} {:>12} {:>8} {:>8}",
        "stack (median)", "events/s", "MB/s", "vs axum"
    );
    for (stack, run) in &runs {
        let vs = axum.map_or("-".into(), |a| format!("{:.2}x", run.events_per_sec() / a));
        println!(
            "{:<22} {:>12.0} {:>8.1} {vs:>8}",
            stack.name(),
            run.events_per_sec(),
            run.mb_per_sec()
        );
    }
}
