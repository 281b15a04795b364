#!/usr/bin/env bash
# Installs what is missing, then runs every check and test, fastest first.
# Exits non-zero on the first failure; ends with the browser test runner's summary.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install.sh

# A clean clone gains nothing from incremental state, and it costs gigabytes of disk.
export CARGO_INCREMENTAL=0

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (native)"
cargo clippy --workspace --exclude frontend --all-targets --locked -- -D warnings

step "clippy (wasm32)"
cargo clippy -p app -p frontend --target wasm32-unknown-unknown --features app/hydrate --all-targets --locked -- -D warnings

step "cargo test (native: protocol, matcher, server, app)"
cargo test --workspace --exclude frontend --locked

step "wasm-bindgen-test in headless Chromium (app)"
# The runner picks ChromeDriver's port itself and now and then loses it to another
# process before the driver binds it ("driver failed to bind port during startup"):
# then, and only then, the run is repeated once.
wasm_log=$(mktemp)
if ! cargo test -p app --target wasm32-unknown-unknown --features hydrate --locked 2>&1 | tee "$wasm_log"; then
  if grep -q "failed to bind port" "$wasm_log"; then
    echo "ChromeDriver lost its port: running the browser tests once more"
    cargo test -p app --target wasm32-unknown-unknown --features hydrate --locked
  else
    rm -f "$wasm_log"
    exit 1
  fi
fi
rm -f "$wasm_log"

step "release build of the site, and of the matcher service (for the cluster's browser test)"
cargo leptos build --release
cargo build --release -p matcher --features service --bin matcher --locked

step "hostile load against the release server (loopback; the bystander's relay p99 must stay under 50 ms, and the search budget must hold the rejoin flood)"
./scripts/attack-checks.sh

step "end-to-end in headless Chromium"
# --test-force-exit: a browser test file whose tests and hooks are done must not be held
# open by what is left behind: the moderation test's process, run by the test runner,
# kept spinning after its hooks were done (not so when run alone).
node --test --test-force-exit --test-concurrency=1 end2end/
