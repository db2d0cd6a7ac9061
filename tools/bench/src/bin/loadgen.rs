//! The load generator on the command line: see `tower_sse_bench::loadgen`.
//!
//! ```text
//! loadgen --url http://127.0.0.1:3000/events?topic=clock -n 1000,5000 --pid <server pid>
//! ```

use clap::Parser;
use tower_sse_bench::loadgen::{Options, run, step_line};

fn main() {
    let options = Options::parse();
    let report = run(&options).unwrap_or_else(|err| {
        eprintln!("loadgen: {err}");
        std::process::exit(1)
    });
    if options.hold {
        return;
    }
    for step in &report.steps {
        match options.churn {
            Some(_) => println!("churn: {:.0} cycles/s", step.cycles_per_sec),
            None => println!("{}", step_line(step)),
        }
    }
    if let Some(complete) = report.complete {
        println!("streams with every event in order: {complete}");
    }
    if !report.errors.is_empty() {
        println!("errors: {:?}", report.errors);
        std::process::exit(3);
    }
}
