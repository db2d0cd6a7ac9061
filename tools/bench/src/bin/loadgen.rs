//! The load generator on the command line: see `tower_sse_bench::loadgen`.
//!
//! ```text
//! cargo run --release -p tower-sse-bench --bin loadgen -- --url http://127.0.0.1:3000/events \
//!     -n 1000,5000 --connect-rate 2000 --settle 2 --duration 10 [--stats http://127.0.0.1:3001/stats] \
//!     [--accept-encoding gzip]
//! ```

use clap::Parser;
use tower_sse_bench::loadgen::{Options, run, step_line};

fn main() {
    let options = Options::parse();
    let report = run(&options).unwrap_or_else(|err| {
        eprintln!("loadgen: {err}");
        std::process::exit(1)
    });
    for step in &report.steps {
        if options.churn.is_some() {
            let (cycles, secs, rate) = (step.cycles, step.window_secs, step.cycles_per_sec);
            println!("churn: {cycles} cycles in {secs:.1} s = {rate:.0} connects+disconnects/s");
        } else {
            println!("{}", step_line(step));
        }
    }
    if let Some(complete) = report.complete {
        println!("connections with every event in order: {complete}");
    }
    if !report.errors.is_empty() {
        println!("errors: {:?}", report.errors);
        // Some connection failed: say so to scripts too.
        std::process::exit(3);
    }
}
