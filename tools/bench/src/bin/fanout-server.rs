//! A fan-out server on the command line: see `tower_sse_bench::server`.
//!
//! ```text
//! cargo run --release -p tower-sse-bench --bin fanout-server -- --stack axum --rate 200 [--topics 320]
//! cargo run --release -p tower-sse-bench --bin fanout-server -- --feed aircraft --topics 320 \
//!     --rate 1 --burst --write-delay-ms 20 --compression gzip [--compression-level 1 --compression-window 1024]
//! ```

use clap::Parser;

fn main() {
    let options = tower_sse_bench::server::Options::parse();
    if let Err(err) = tower_sse_bench::server::serve_forever(&options) {
        eprintln!("fanout-server: {err}");
        std::process::exit(1);
    }
}
