#!/usr/bin/env bash
# Runs the benchmark suite (the `bench-suite` binary of tools/bench; `--help` lists every
# flag) and writes benches/results/results.json and, made from it, results.md: fan-out,
# churn, two instances on one Redis, high rate with write batching, compression, idle
# memory, then criterion's benches/burst.rs and benches/encode.rs. Arguments go to the
# suite: `benches/run.sh --skip redis`, `benches/run.sh --only idle` (which writes
# results-idle.{json,md} instead), `benches/run.sh --high-rate-steps 500`. Without
# `--only` or `--smoke`, benches/metrics-cost.sh runs after it (the `metrics` feature off
# and on, side by side). Methods, and how to run each section and a load of more than
# 20,000 streams: benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers and load generators each hold up to 19,000 sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -p tower-sse-bench --features redis --bins
target/release/bench-suite --command "benches/run.sh${*:+ $*}" "$@"
case " $* " in
*" --only"* | *" --smoke "* | *" --render"* | *" --help "*) ;;
*) benches/metrics-cost.sh ;;
esac
