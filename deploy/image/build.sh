#!/usr/bin/env bash
# Builds the container image, the same way in CI and for users:
#   bash deploy/image/build.sh [TAG]          (default tag: algorithmia-datadog:<version>)
# 1. `cargo build --release --locked` (honours CARGO_TARGET_DIR);
# 2. stages a root file system: the binary, the shared libraries `ldd` lists, the CA bundle,
#    /etc/passwd and /etc/group with distroless' nonroot user (65532), /etc/os-release, and for
#    every Debian package those libraries come from a distroless-style record under
#    /var/lib/dpkg/status.d/ plus its copyright file, so that Trivy, Grype or Syft see them;
# 3. `podman build` (or `docker build` with CONTAINER_TOOL=docker) of deploy/image/Containerfile,
#    FROM scratch, with the OCI labels, timestamps from the last commit (reproducible).
# Needs a Debian-based build host (the libraries and dpkg records are the host's). podman uses
# deploy/image/containers.conf unless CONTAINERS_CONF says otherwise.
# Environment: CARGO_TARGET_DIR, CONTAINER_TOOL (podman), IMAGE_SOURCE (the source label).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

version=$(sed -nE 's/^version = "([^"]+)"$/\1/p' Cargo.toml | head -n 1)
tag=${1:-algorithmia-datadog:$version}
tool=${CONTAINER_TOOL:-podman}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

command -v "$tool" >/dev/null 2>&1 || {
  echo "build.sh: $tool is missing; install it with: bash .ci/install-podman.sh" >&2
  exit 1
}

echo "== cargo build --release ($target_dir)"
cargo build --release --locked --quiet --target-dir "$target_dir"
binary=$target_dir/release/algorithmia-datadog

echo "== staging the root file system"
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root=$context/rootfs
install -D -m 0755 "$binary" "$root/usr/local/bin/algorithmia-datadog"

# The libraries the binary loads, the dynamic loader among them, at the paths ldd shows (the
# loader's path is compiled into the binary).
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libraries" ] || { echo "build.sh: ldd lists no libraries for $binary" >&2; exit 1; }
packages=()
for lib in $libraries; do
  real=$(readlink -f "$lib")
  install -D -m 0755 "$real" "$root$real"
  [ "$real" = "$lib" ] || { mkdir -p "$root$(dirname "$lib")"; ln -sf "$real" "$root$lib"; }
  # The owning package (dpkg knows /lib/... and /usr/lib/... under either name: merged /usr).
  owner=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || dpkg -S "$lib" 2>/dev/null) || {
    echo "build.sh: no Debian package owns $lib" >&2; exit 1; }
  packages+=("${owner%%:*}")
done

install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
install -D -m 0644 /etc/os-release "$root/etc/os-release"
install -d -m 0755 "$root/etc/algorithmia-datadog" "$root/tmp"
chmod 1777 "$root/tmp"
install -d -m 0755 "$root/home/nonroot"
install -d -m 0700 "$root/root"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# Distroless-style package records: one control stanza per package (what `dpkg -s` prints,
# without the local Status and Conffiles), the layout Trivy, Grype and Syft read in distroless.
install -d -m 0755 "$root/var/lib/dpkg/status.d"
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
for package in "${packages[@]}"; do
  name=${package%%:*}
  dpkg-query -s "$package" | awk '/^[^ ]/ { skip = /^(Status|Conffiles):/ } !skip' \
    > "$root/var/lib/dpkg/status.d/$name"
  if [ -f "/usr/share/doc/$name/copyright" ]; then
    install -D -m 0644 "/usr/share/doc/$name/copyright" "$root/usr/share/doc/$name/copyright"
  fi
  echo "   $name $(dpkg-query -W -f '${Version}' "$package")"
done
# The fixed date of the last commit on every file: the same tree gives the same layer.
find "$root" -exec touch -h -d "@$epoch" {} +
cp "$here/Containerfile" "$context/Containerfile"

echo "== $tool build $tag"
"$tool" build --quiet --file "$context/Containerfile" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  --build-arg "CREATED=$created" \
  ${IMAGE_SOURCE:+--build-arg "SOURCE=$IMAGE_SOURCE"} \
  $( [ "$tool" = podman ] && echo "--timestamp $epoch" ) \
  --tag "$tag" "$context" >/dev/null
size=$("$tool" image inspect --format '{{.Size}}' "$tag")
echo "$tag: $size bytes"
