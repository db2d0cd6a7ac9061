//! The benchmark suite on the command line (`benches/run.sh` runs it): see
//! `tower_sse_bench::suite`.

use clap::Parser;
use tower_sse_bench::suite::{self, Args, Config};

fn main() {
    let args = Args::parse();
    let result = match &args.render {
        Some(json) => suite::render(json),
        None => suite::run(&Config::new(args)),
    };
    let markdown = result.unwrap_or_else(|err| {
        eprintln!("bench-suite: {err}");
        std::process::exit(1)
    });
    println!("{markdown}");
}
