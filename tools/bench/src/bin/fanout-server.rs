//! A fan-out server on the command line: see `tower_sse_bench::server`.
//!
//! ```text
//! fanout-server --stack axum --rate 200 [--topics 320] [--feed aircraft --burst]
//! fanout-server --stack tower-sse --write-delay-ms 20 --compression gzip
//! ```

use clap::Parser;

fn main() {
    if let Err(err) = tower_sse_bench::server::run(&tower_sse_bench::server::Options::parse()) {
        eprintln!("fanout-server: {err}");
        std::process::exit(1);
    }
}
