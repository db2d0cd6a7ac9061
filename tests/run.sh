#!/bin/sh
# The project's one test command. On a fresh Debian machine, as root, it installs what
# the tests need (Chromium and Redis from Debian, the browser tests' Node packages from
# npm) and then runs every check: formatting, clippy, all tests, and the docs.
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

step() {
    printf '\n==> %s\n' "$*"
}

# System packages: Debian's Chromium for the browser tests (with DejaVu fonts, which
# `--no-install-recommends` leaves out, so that screenshots show text), Redis for the
# tests that need a server. Skipped when all are already installed, to keep reruns fast.
if [ -x /usr/bin/chromium ] && command -v redis-server >/dev/null 2>&1 &&
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    step "chromium, fonts-dejavu-core and redis-server are installed; skipping apt-get"
else
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    step "apt-get install chromium fonts-dejavu-core redis-server"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
        chromium fonts-dejavu-core redis-server
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

step "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings

step "cargo test --all-features"
cargo test --all-features

step "cargo doc --no-deps --all-features (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features

step "all checks passed"
