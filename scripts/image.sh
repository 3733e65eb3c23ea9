#!/usr/bin/env bash
# Builds tollgate's container image with podman (Debian's), from this
# checkout: a static musl binary with its dependency list embedded
# (cargo-auditable), `FROM scratch`, non-root (65532), for a read-only
# root filesystem. Leaves in target/image/:
#   tollgate                       the binary the image holds
#   tollgate-VERSION.oci.tar       the image as an OCI archive
#   image-digest.txt               the image's manifest digest
#   dependencies.json              the dependency list embedded in the binary
#   SHA256SUMS                     checksums of the binary, the archive
#                                  and the dependency list
#
#   scripts/image.sh            # build
#   scripts/image.sh --test     # build, then run it: /readyz, a decision,
#                               # as 65532 on a read-only root
#
# Installs what is missing first: the musl target (rustup), musl-tools,
# podman, runc, binutils and ca-certificates (apt), cargo-auditable
# (crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
test_it=0
[ "${1:-}" = --test ] && test_it=1

target=x86_64-unknown-linux-musl
auditable_version=0.7.4
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
image="localhost/tollgate:$version"
out=target/image

rustup target add "$target" >/dev/null 2>&1 || rustup target list --installed | grep -qx "$target" ||
  { echo "cannot add the Rust target $target" >&2; exit 2; }
missing=()
command -v musl-gcc >/dev/null || missing+=(musl-tools)
command -v objcopy >/dev/null || missing+=(binutils)
command -v podman >/dev/null || missing+=(podman)
# This machine's cgroups are hybrid (v1 controllers beside a v2 mount),
# which crun refuses; runc runs the container.
command -v runc >/dev/null || missing+=(runc)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt)"
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! cargo install --list | grep -qx "cargo-auditable v$auditable_version:"; then
  echo "installing cargo-auditable $auditable_version (cargo install)"
  cargo install --quiet --locked cargo-auditable --version "$auditable_version"
fi

# ring's C and assembly build with musl-gcc; everything else is Rust.
# Without `precompiled`: the image is built here and runs on CPUs no one
# knows yet, and for another target the build script's wasmtime would be a
# second build of wasmtime and Cranelift. The pod compiles the plugins it
# runs once into its compile cache (an emptyDir) instead.
CC_x86_64_unknown_linux_musl=musl-gcc \
  cargo auditable build --release --locked --target "$target" -p tollgate --bin tollgate \
  --no-default-features
bin=target/$target/release/tollgate
# Static: no program interpreter, no shared library.
if readelf -l "$bin" | grep -q "INTERP" || readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
  echo "$bin is not static" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/context"
# Symbols stripped (9 MB); the dependency list section stays.
strip --strip-all -o "$out/tollgate" "$bin"
# The dependency list cargo-auditable embedded (zlib-compressed JSON), read
# back and kept beside the image as dependencies.json.
objcopy --dump-section .dep-v0="$out/dep-v0.z" "$out/tollgate" "$out/objcopy.discard" ||
  { echo "$out/tollgate has no .dep-v0 section (cargo-auditable)" >&2; exit 1; }
python3 - "$out/dep-v0.z" "$out/dependencies.json" <<'PY'
import json, sys, zlib
deps = json.loads(zlib.decompress(open(sys.argv[1], "rb").read()))
names = {p["name"] for p in deps["packages"]}
missing = {"tollgate", "wasmtime", "rustls"} - names
if missing:
    sys.exit(f"the embedded dependency list lacks {sorted(missing)}")
json.dump(deps, open(sys.argv[2], "w"), indent=1)
print(f"embedded dependency list: {len(deps['packages'])} packages")
PY
rm -f "$out/dep-v0.z" "$out/objcopy.discard"
cp "$out/tollgate" "$out/context/tollgate"
cp deploy/image/Containerfile "$out/context/"
cp /etc/ssl/certs/ca-certificates.crt "$out/context/"
printf 'root:x:0:0:root:/:/sbin/nologin\ntollgate:x:65532:65532:tollgate:/var/lib/tollgate:/sbin/nologin\n' >"$out/context/passwd"
printf 'root:x:0:\ntollgate:x:65532:\n' >"$out/context/group"
podman build --quiet --pull=never --timestamp 0 \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "$image" -f "$out/context/Containerfile" "$out/context" >/dev/null
podman save --quiet --format oci-archive -o "$out/tollgate-$version.oci.tar" "$image"
digest=$(podman image inspect --format '{{.Digest}}' "$image")
echo "$digest" >"$out/image-digest.txt"
(cd "$out" && sha256sum tollgate "tollgate-$version.oci.tar" dependencies.json >SHA256SUMS)
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "built $image ($digest, $((size / 1024 / 1024)) MiB) in $(($(date +%s) - started)) s"

[ $test_it = 1 ] || exit 0

# Run it as it runs in Kubernetes: its own user, a read-only root, the
# cache and the log on tmpfs, a token file mounted read-only.
work=$(mktemp -d)
name="tollgate-image-test-$$"
trap 'podman --runtime runc rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
token="image-test-token-0123456789abcdef"
echo "$token" >"$work/tokens"
chmod 0644 "$work/tokens"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Explicit limits: this machine forbids raising the defaults podman sets.
podman --runtime runc run -d --name "$name" --read-only --network host \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  --tmpfs /var/cache/tollgate:rw,mode=1777 --tmpfs /var/lib/tollgate:rw,mode=1777 \
  -v "$work/tokens:/etc/tollgate/tokens:ro" -e TOLLGATE_TOKENS_FILE=/etc/tollgate/tokens \
  "$image" serve --addr "127.0.0.1:$port" >/dev/null
for _ in $(seq 150); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.2
done
fail() { echo "image test: $*" >&2; podman --runtime runc logs "$name" >&2 || true; exit 1; }
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "/readyz never answered"
decision=$(curl -sf -X POST "http://127.0.0.1:$port/v1/evaluate" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  --data "{\"policy\": \"ci-quality-gates\", \"snapshot\": $(cat tests/fixtures/ci-passing.json)}" |
  python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["decision"], d["decision_id"])') ||
  fail "no decision"
pid=$(podman --runtime runc inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "runs as uid $uid, not 65532"
[ "$(podman --runtime runc inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] ||
  fail "the root filesystem is writable"
echo "image test: /readyz ready, decision ${decision}, uid $uid, read-only root"

# Then as deploy/base configures it: its config file, policies and mounts
# (a throwaway certificate for tollgate.tollgate.svc), HTTPS on 8080's
# stand-in port, /healthz and /readyz as the probes ask them.
podman --runtime runc rm -f "$name" >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=tollgate.tollgate.svc -addext subjectAltName=DNS:tollgate.tollgate.svc,IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
chmod 0644 "$work/tls.key"
sed "s/^addr: .*/addr: 127.0.0.1:$port/" deploy/base/tollgate.yaml >"$work/tollgate.yaml"
podman --runtime runc run -d --name "$name" --read-only --network host \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  --tmpfs /var/cache/tollgate:rw,mode=1777 --tmpfs /var/lib/tollgate:rw,mode=1777 --tmpfs /tmp:rw,mode=1777 \
  -v "$work/tollgate.yaml:/etc/tollgate/config/tollgate.yaml:ro" \
  -v "$PWD/deploy/base/policies:/etc/tollgate/policies:ro" \
  -v "$work/tokens:/etc/tollgate/tokens/tokens:ro" \
  -v "$work/tls.crt:/etc/tollgate/tls/tls.crt:ro" -v "$work/tls.key:/etc/tollgate/tls/tls.key:ro" \
  -e TOLLGATE_STORE=/var/lib/tollgate/tollgate.db \
  "$image" serve --config=/etc/tollgate/config/tollgate.yaml >/dev/null
https=(curl -sf --cacert "$work/tls.crt" --resolve "tollgate.tollgate.svc:$port:127.0.0.1")
for _ in $(seq 150); do
  "${https[@]}" "https://tollgate.tollgate.svc:$port/readyz" >/dev/null && break
  sleep 0.2
done
"${https[@]}" "https://tollgate.tollgate.svc:$port/healthz" >/dev/null || fail "deploy/base's config: /healthz never answered over HTTPS"
"${https[@]}" "https://tollgate.tollgate.svc:$port/readyz" >/dev/null || fail "deploy/base's config: /readyz never answered"
policies=$("${https[@]}" "https://tollgate.tollgate.svc:$port/v1/policies" -H "Authorization: Bearer $token" |
  python3 -c 'import json, sys; print(len(json.load(sys.stdin)["policies"]))') || fail "deploy/base's config: no policy list"
echo "image test: as deploy/base configures it, HTTPS /healthz and /readyz, $policies policies from its ConfigMap"
