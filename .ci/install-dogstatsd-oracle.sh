#!/usr/bin/env bash
# Datadog's own DogStatsD server, for tests/datadog_parser.rs: the static Linux binary in the PyPI
# wheel datadog-serverless-compat (built on Datadog's Rust DogStatsD codec, the crate `dogstatsd`
# of DataDog/serverless-components). The version is pinned: the test reads its trace log, which
# is debug text and not a stable format. Nothing of the wheel is installed into Python.
# Installed as `datadog-serverless-compat-<version>` in cargo's bin directory, only if missing.
set -euo pipefail

version=0.19.0
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
target="$bin_dir/datadog-serverless-compat-$version"
mkdir -p "$bin_dir"

if [ -x "$target" ]; then
  echo "datadog-serverless-compat: $target"
  exit 0
fi
wheel_dir=$(mktemp -d)
trap 'rm -rf "$wheel_dir"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheel_dir" \
  "datadog-serverless-compat==$version"
python3 -m zipfile -e "$wheel_dir"/datadog_serverless_compat-"$version"-*.whl "$wheel_dir/x"
install -m 0755 "$wheel_dir/x/datadog_serverless_compat/bin/linux-amd64/datadog-serverless-compat" \
  "$target"
echo "datadog-serverless-compat: $target (PyPI datadog-serverless-compat $version)"
