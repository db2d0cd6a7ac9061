#!/usr/bin/env bash
# Runs the whole benchmark suite and writes benches/results/{results.md,results.json,fanout.svg}:
# encode (criterion, benches/encode.rs) first, then the suite driver (benches/suite.rs):
# delivery check, fan-out at 1,000/5,000/15,000 subscribers, idle memory at 15,000
# connections, churn, two instances on one Redis, burst of 1,000,000 events.
# Takes about 8 minutes on 2 cores. Arguments go to the suite driver (see benches/suite.rs),
# e.g. `benches/run.sh --skip churn,redis`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers and the load generator each hold up to 15,000 sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo bench --all-features --no-run
cargo bench --all-features --bench encode -- --noplot
cargo bench --all-features --bench suite -- --command "benches/run.sh${*:+ $*}" "$@"
