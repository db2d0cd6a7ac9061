#!/usr/bin/env bash
# What the `metrics` feature costs, side by side: examples/metrics_cost built without the
# feature and with it (a Prometheus recorder installed), run in alternation (burst to one
# client, fan-out to 5,000 subscribers, one write of the layer, one publish), each figure
# the median of the rounds. Writes benches/results/metrics-cost.md. `benches/run.sh`
# runs it after the suite; alone: `benches/metrics-cost.sh [--rounds N]` (default 9).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bin=target/metrics-cost
mkdir -p "$bin" benches/results
cargo build --release -p tower-sse-examples --example metrics_cost
cp target/release/examples/metrics_cost "$bin/off"
cargo build --release -p tower-sse-examples --example metrics_cost --features metrics
cp target/release/examples/metrics_cost "$bin/on"
out=benches/results/metrics-cost.md
rounds=9
[ "${1:-}" = "--rounds" ] && rounds=$2
{
    echo "# What the metrics feature costs"
    echo
    echo "\`benches/metrics-cost.sh --rounds $rounds\` on $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'),"
    echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
    echo "\`off\`: built without the feature; \`on\`: with it and a Prometheus recorder installed."
    echo
    echo '```text'
    "$bin/on" compare "$bin/off" "$bin/on" --rounds "$rounds"
    echo '```'
} | tee "$out.part"
mv "$out.part" "$out"
