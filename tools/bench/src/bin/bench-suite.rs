//! The benchmark suite on the command line (`benches/run.sh` runs it): see
//! `tower_sse_bench::suite`. `--smoke` runs it at tiny sizes.

use clap::Parser;
use tower_sse_bench::suite::{self, Args, Config};

fn main() {
    let result = Config::new(Args::parse()).and_then(|config| {
        let results = suite::run(&config)?;
        println!("{}", tower_sse_bench::report::markdown(&results, &config));
        println!("written to {}", config.out.display());
        Ok(())
    });
    if let Err(err) = result {
        eprintln!("bench-suite: {err}");
        std::process::exit(1);
    }
}
