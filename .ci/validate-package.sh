#!/usr/bin/env bash
# Validate a Datadog integrations-extras package offline with ddev.
#
#   usage: .ci/validate-package.sh <package-source-dir> [integration-name]
#
# env: DD_VALIDATE_WORKDIR  scratch dir to use (default: a new mktemp -d; reused venv if present)
# Exit status is non-zero if any validation fails.
set -euo pipefail

SRC=${1:?usage: $0 <package-source-dir> [integration-name]}
NAME=${2:-algorithmia}
DDEV_VERSION=14.4.0              # newest 14.x (supports Python 3.11)
DDCD_VERSION=36.1.0              # datadog-checks-dev that ddev 14.4.0 resolves to

[ -f "$SRC/manifest.json" ] || { echo "no manifest.json in $SRC" >&2; exit 2; }
command -v git >/dev/null || { echo "git is required (apt-get install -y git)" >&2; exit 2; }
SRC=$(cd "$SRC" && pwd)
WORK=${DD_VALIDATE_WORKDIR:-$(mktemp -d)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
VENV=$WORK/venv
REPO=$WORK/repo

# 1. ddev in a virtualenv (pinned)
if [ ! -x "$VENV/bin/ddev" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "ddev==$DDEV_VERSION" "datadog-checks-dev==$DDCD_VERSION"
fi
DDEV=$VENV/bin/ddev

# 2. Throwaway ddev config/cache/data: ddev keeps its config at
#    $XDG_DATA_HOME/dd-checks-dev/config.toml and its upgrade-check stamp at
#    $XDG_CACHE_HOME/ddev/upgrade_check.json. Nothing under $HOME is touched.
export XDG_CONFIG_HOME=$WORK/xdg/config XDG_DATA_HOME=$WORK/xdg/data XDG_CACHE_HOME=$WORK/xdg/cache
unset DDEV_CONFIG DDEV_REPO DDEV_DATA_DIR DDEV_CACHE_DIR
export NO_COLOR=1 DDEV_INTERACTIVE=false
# Pre-seed the weekly PyPI upgrade check so that not even the first ddev call goes online;
# `upgrade_check = false` below then turns it off for good.
mkdir -p "$XDG_CACHE_HOME/ddev"
printf '{"version": "%s", "date": "%s"}\n' "$DDEV_VERSION" "$(date +%Y-%m-%dT%H:%M:%S)" \
    > "$XDG_CACHE_HOME/ddev/upgrade_check.json"

# 3. Scratch integrations-extras-like git repo: <repo>/<name>/...
rm -rf "$REPO"
mkdir -p "$REPO/$NAME"
(cd "$SRC" && tar --exclude=.git -cf - .) | (cd "$REPO/$NAME" && tar -xf -)
git -C "$REPO" init -q
git -C "$REPO" add -A
git -C "$REPO" -c user.name=ci -c user.email=ci@example.invalid commit -q -m "add $NAME"

# Run ddev from inside the scratch dir so no stray .ddev.toml override from the caller's cwd applies.
cd "$WORK"
for kv in "upgrade_check false" "repos.extras $REPO" "repo extras"; do
    # shellcheck disable=SC2086
    "$DDEV" config set $kv >/dev/null 2>&1 || { echo "ddev config set $kv failed" >&2; exit 1; }
done

# 4. Validations (each must pass; all run, failures are collected)
failed=()
run() {
    echo "==> $*"
    if "$@"; then echo "    ok"; else echo "    FAILED (exit $?)"; failed+=("$*"); fi
}
run "$DDEV" -e validate metadata "$NAME"
run "$DDEV" -e validate service-checks "$NAME"
run "$DDEV" -e validate dashboards "$NAME"
# ddev 14.4.0 prints an error for a README image that is not
# https://raw.githubusercontent.com/DataDog/integrations-extras/master/<name>/images/<file>
# but still exits 0, so that message is turned into a failure here.
readmes() {
    local out rc=0
    out=$("$DDEV" -e validate readmes "$NAME" 2>&1) || rc=$?
    printf '%s\n' "$out"
    [ "$rc" -eq 0 ] || return "$rc"
    ! grep -q 'All images must be checked into the repo' <<<"$out"
}
run readmes

# 5. Manifest v2 validators (what the removed `ddev validate manifest` ran), minus the
#    SchemaValidator, which POSTs the manifest to <dd_url>/api/beta/apps/manifest/validate.
cat > "$WORK/validate_manifest.py" <<'PY'
import json
import os
import sys

from datadog_checks.dev.tooling.constants import set_root
from datadog_checks.dev.tooling.datastructures import JSONDict
from datadog_checks.dev.tooling.manifest_validator import get_all_validators
from datadog_checks.dev.tooling.manifest_validator.constants import V2_STRING

root, check = sys.argv[1], sys.argv[2]
set_root(root)  # get_root() is used by the validators to find <root>/<check>/...
path = os.path.join(root, check, 'manifest.json')
try:
    with open(path, encoding='utf-8') as f:
        decoded = JSONDict(json.loads(f.read().strip()))
except (OSError, json.JSONDecodeError) as e:
    sys.exit(f'{check}/manifest.json: FAILED\n  invalid json: {e}')

version = decoded.get('manifest_version')
if version != V2_STRING:
    sys.exit(f'{check}/manifest.json: FAILED\n  manifest_version must be "{V2_STRING}", got {version!r}')

# Same call as the old command, with repo_choice == 'extras' and the network schema check off.
validators = get_all_validators(None, version, is_extras=True, is_marketplace=False, ignore_schema=True)
failures = 0
for validator in validators:
    name = type(validator).__name__
    if validator.skip_if_errors and failures:
        continue
    try:
        validator.validate(check, decoded, False)
    except Exception as e:  # a missing/mistyped field makes some validators raise
        validator.fail(f"  crashed: {type(e).__name__}: {e} (missing or malformed field?)")
    res = validator.result
    failures += bool(res.failed)
    for kind in ('failure', 'warning', 'info'):
        for msg in res.messages[kind]:
            print(f'  [{kind}] {name}: {msg.strip()}')

if failures:
    sys.exit(f'{check}/manifest.json: FAILED ({failures} validator(s))')
print(f'{check}/manifest.json: {len(validators)} validators passed (SchemaValidator skipped: needs network)')
PY
run "$VENV/bin/python" "$WORK/validate_manifest.py" "$REPO" "$NAME"

if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "All validations passed for $NAME"
