#!/bin/sh
# The project's one test command. On a fresh Debian machine, as root, it installs what
# the tests need (Chromium and Redis from Debian, the browser tests' Node packages from
# npm) and then runs every check: formatting, clippy, all tests, and the docs.
# `cargo test` alone needs only Rust and runs the tests that need nothing else; the
# others are behind the features test-redis, test-browser, test-nginx and test-netns,
# which `--all-features` turns on here (tests/README.md lists them).
#
#   tests/run.sh            (from anywhere; .ci/run calls it)
set -eu

cd "$(dirname "$0")/.."
ROOT=$(pwd)

# rustup's cargo, for shells that did not source ~/.cargo/env.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
    export PATH
fi

# A one-off build: incremental caches only cost disk (gigabytes over ~30 binaries).
CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_INCREMENTAL

step() {
    printf '\n==> %s\n' "$*"
}

# System packages: Debian's Chromium for the browser tests (with DejaVu fonts, which
# `--no-install-recommends` leaves out, so that screenshots show text), Debian's Leaflet
# (libjs-leaflet), which the aircraft example serves to its map page and its browser
# test loads from there, Redis for the tests that need a server, iproute2 (`ip netns`)
# for the half-open client test, nginx (/usr/sbin/nginx) for the compressed streams
# through a proxy, and Node.js when the machine has none. Skipped when all are
# installed, to keep reruns fast.
if [ -x /usr/bin/chromium ] && command -v redis-server >/dev/null 2>&1 &&
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] &&
    [ -f /usr/share/javascript/leaflet/leaflet.js ] && [ -x /usr/sbin/nginx ] &&
    command -v ip >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
    step "chromium, fonts-dejavu-core, libjs-leaflet, redis-server, iproute2, nginx and node are installed; skipping apt-get"
else
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    PACKAGES="chromium fonts-dejavu-core libjs-leaflet redis-server iproute2 nginx"
    command -v node >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"
    step "apt-get install $PACKAGES"
    $SUDO apt-get update
    # shellcheck disable=SC2086 # the list is meant to split into words
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $PACKAGES
fi

# Node packages of the browser tests (playwright-core drives Debian's Chromium; it
# downloads no browser of its own), exactly as locked.
step "npm ci (tests/browser)"
command -v node >/dev/null 2>&1 || {
    echo "tests/run.sh: node is not installed; the browser tests need Node.js 18 or newer" >&2
    exit 1
}
(cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund)

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# The whole workspace (the library, the examples, tools/bench) with every feature, the
# test-* ones included: every test runs, none is ignored for a missing program. Every
# test file runs even when one fails, so that a failure hides no other.
step "cargo test --workspace --all-features --no-fail-fast"
cargo test --workspace --all-features --no-fail-fast

# The loom models of the hub's park / wake / watermark protocol and of the batching
# slot and ticker (src/hub/loom.rs, src/layer/stream/loom.rs; src/sync.rs says how),
# built in a target directory of their own so that the build above stays valid. On
# 2 shared cores: about 3 minutes to build from nothing, 1 min 45 s to run (six models,
# about 150,000 executions at most 3 preemptions each: LOOM_MAX_PREEMPTIONS changes it).
step "loom models (RUSTFLAGS=--cfg tower_sse_loom, target/loom)"
RUSTFLAGS="--cfg tower_sse_loom" CARGO_TARGET_DIR="$ROOT/target/loom" cargo test -p tower-sse --lib loom

# Each feature on its own, without the dev-dependencies' features: a feature that needs
# more of tokio (say) than it asks for fails here, not in a user's build.
for feature in "" serve json redis axum warp compression-gzip compression-deflate compression-br compression-zstd metrics; do
    step "cargo check -p tower-sse --lib --no-default-features --features '$feature'"
    cargo check -p tower-sse --lib --no-default-features --features "$feature"
done

step "cargo doc -p tower-sse --no-deps --all-features (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -p tower-sse --no-deps --all-features

# The published package: only what a user of the library needs (the `include` list in
# Cargo.toml), and it builds on its own with the default features.
step "cargo package"
# (Cargo notes every example, test and bench it leaves out: that is the point.)
mkdir -p target
if ! cargo package -p tower-sse --allow-dirty >target/package.log 2>&1; then
    cat target/package.log
    exit 1
fi
grep -v "^warning: ignoring \(example\|test\|benchmark\) " target/package.log

step "all checks passed"
