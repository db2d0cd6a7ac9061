#!/usr/bin/env bash
# Runs the whole benchmark suite and writes benches/results/{results.md,results.json,fanout.svg}:
# encode (criterion, benches/encode.rs) first, then the suite (the `bench-suite` binary of
# tools/bench): delivery check (with write batching and each codec too), fan-out at
# 1,000/5,000/15,000 subscribers, idle memory at 15,000 connections, churn, two instances
# on one Redis, high rate (500 and 2,000 subscribers at 200 events/s, and 320 topics at
# 1 event/s each; tower-sse with write delays 0, 5, 20 and 50 ms, and the write batching
# targets), batching's cost with 5,000 idle streams, burst of 1,000,000 events. Arguments
# go to the suite (`bench-suite --help`), e.g. `benches/run.sh --skip churn,redis`.
#
# `--only <sections>` runs those alone and writes benches/results/results-<sections>.{md,json}
# instead; the compression sections run only so:
# `benches/run.sh --only compression,memory,blocks`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers and the load generator each hold up to 15,000 sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Criterion's encode bench only when the suite reports it.
encode=yes
args=" $* "
if [[ $args =~ \ --only[=\ ]([^ ]*) ]] && [[ ,${BASH_REMATCH[1]}, != *,encode,* ]]; then
    encode=no
fi
if [[ $args =~ \ --skip[=\ ]([^ ]*) ]] && [[ ,${BASH_REMATCH[1]}, == *,encode,* ]]; then
    encode=no
fi
if [[ $encode == yes ]]; then
    cargo bench --all-features --bench encode --no-run
fi
cargo build --release -p tower-sse-bench --features redis --bins
if [[ $encode == yes ]]; then
    cargo bench --all-features --bench encode -- --noplot
fi
cargo run --release -p tower-sse-bench --features redis --bin bench-suite -- \
    --command "benches/run.sh${*:+ $*}" "$@"
