//! The load generator on the command line: see `tower_sse_bench::loadgen`. Prints the
//! report as JSON; exits with status 3 if any stream failed.
//!
//! ```text
//! loadgen --url 'http://127.0.0.1:3000/events?topic=clock' -n 1000,5000 --pid <server pid>
//! ```

use clap::Parser;

fn main() {
    let options = tower_sse_bench::loadgen::Options::parse();
    let report = tower_sse_bench::loadgen::run(&options).unwrap_or_else(|err| {
        eprintln!("loadgen: {err}");
        std::process::exit(1)
    });
    if !options.hold {
        let json = serde_json::to_string_pretty(&report).expect("a report");
        println!("{json}");
        if !report.errors.is_empty() {
            std::process::exit(3);
        }
    }
}
