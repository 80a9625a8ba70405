#!/usr/bin/env bash
# podman and runc, for the container image test (tests/container.rs) and deploy/image/build.sh;
# installed only where missing. podman runs with deploy/image/containers.conf (runc, ulimits root
# may set) on hosts where its defaults fail.
set -euo pipefail
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
podman --version
