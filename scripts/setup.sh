#!/usr/bin/env bash
# Installs what Trellis needs on a fresh Debian machine with Rust and Node.js, idempotently.
# Everything comes from a package registry (crates.io, npm, Debian); nothing downloads a
# prebuilt binary. Usage: scripts/setup.sh [--for-tests]
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=false
[[ "${1:-}" == "--for-tests" ]] && for_tests=true

say() { echo "setup: $*"; }
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if ((${#missing[@]})); then
    say "installing ${missing[*]} from Debian"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust first (https://rustup.rs)"; exit 1; }
command -v git >/dev/null || apt_install git

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen's CLI must equal the library version exactly.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [[ "$have" != "$want" ]]; then
  say "installing wasm-bindgen-cli $want from crates.io (a few minutes, once)"
  # Not --locked: its lockfile pins a crate version this registry lacks (see shared/TOOLCHAIN.md).
  cargo install wasm-bindgen-cli --version "$want" --quiet
fi

if [[ ! -x tools/node_modules/.bin/wasm-opt ]]; then
  say "installing wasm-opt (binaryen) from npm"
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi

if $for_tests; then
  # Real peers for conformance tests: curl and h2load as clients; ssh-keygen signs commits.
  apt_install chromium curl nghttp2-client openssh-client
  # The benchmarks' peers and tools, for their smoke runs (bench/common.sh).
  apt_install nginx-light haproxy wrk valgrind openssl util-linux
  # The consumers of /metrics: promtool checks the format, a real Prometheus scrapes the mesh;
  # systemd-analyze checks the units.
  apt_install prometheus systemd
  # The container images are built and run with podman (runc: crun cannot start containers on
  # these machines' cgroup layout); binutils strips the binaries on the way in.
  apt_install podman runc binutils
  if ! (command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1); then
    apt_install postgresql
  fi
  # From PyPI, in a venv: a real gRPC client and server for the proxy's gRPC tests,
  # kubernetes-validate for the manifests `trellis install kubernetes` prints, OpenTelemetry's
  # protobuf messages for the OTLP receiver the span export is tested against, and jsonschema
  # to check the API's answers against its OpenAPI document.
  if ! tools/venv/bin/python -c "import grpc, kubernetes_validate, opentelemetry.proto, jsonschema" 2>/dev/null; then
    say "installing grpcio, kubernetes-validate, opentelemetry-proto and jsonschema from PyPI into tools/venv"
    python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv
    [[ -x tools/venv/bin/pip ]] || python3 -m venv tools/venv
    tools/venv/bin/pip install --quiet --disable-pip-version-check grpcio kubernetes-validate opentelemetry-proto jsonschema
  fi
  if [[ ! -d playwright/node_modules/@playwright/test || ! -d playwright/node_modules/@axe-core/playwright ]]; then
    say "installing Playwright from npm (no browser download: Debian's Chromium is used)"
    (cd playwright && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
