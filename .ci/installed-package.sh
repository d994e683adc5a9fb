#!/usr/bin/env bash
# The package as users install it: `npm pack`, `npm i -g --prefix <tmp>` of the tarball, then the
# installed `podid-migrate --help`, `podid-migrate plan` against a sandbox started by the installed
# `podid-migrate sandbox up`, and `kubectl podid-migrate --help` (kubectl finding the plugin on
# PATH). Once with the machine's own Node and once with the Node that `npm ci` provides
# (node_modules/.bin/node, when it is a different version). Fails loudly on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/podid-package-XXXXXX")
sandboxes=()

cleanup() {
  local dir
  for dir in "${sandboxes[@]}"; do
    [ -f "$dir/sandbox.json" ] && "${last_bin:-false}/podid-migrate" sandbox down --dir "$dir" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "installed package: FAILED: $*" >&2
  exit 1
}

# PATH without any node_modules/.bin (npm scripts put the project's first): what a user has.
user_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v 'node_modules/\.bin' | paste -sd: -)
machine_node=$(PATH=$user_path command -v node) || fail "no node on PATH outside node_modules/.bin"
project_node=$root/node_modules/.bin/node
version=$(node -p "require('./package.json').version" 2>/dev/null || "$machine_node" -p "require('./package.json').version")

echo "== npm pack"
PATH=$user_path npm pack --pack-destination "$work" --silent >/dev/null || fail "npm pack"
tgz=$(ls "$work"/podid-migrate-*.tgz) || fail "npm pack wrote no tarball"
tar -tzf "$tgz" >"$work/contents"
for f in package/dist/cli/main.js package/dist/sandbox/daemon.js package/dist/sandbox/manifests/managed-v1.8.17.yaml \
  package/bin/podid-migrate package/bin/kubectl-podid_migrate package/bin/kubectl_complete-podid_migrate package/bin/launch.js package/schemas/plan.schema.json \
  package/scenarios/default.yaml package/scenarios/scenario.schema.json package/inventory/inventory.schema.json package/LICENSE; do
  grep -qx "$f" "$work/contents" || fail "the tarball lacks $f"
done
if grep -E '^package/(src|test|bench|tools)/|\.ts$' "$work/contents"; then fail "the tarball ships sources or tests (listed above)"; fi
echo "tarball $(basename "$tgz"): $(wc -l <"$work/contents") files, no TypeScript"

nodes=("$machine_node")
if [ -x "$project_node" ] && [ "$("$project_node" --version)" != "$("$machine_node" --version)" ]; then nodes+=("$project_node"); fi

for node in "${nodes[@]}"; do
  label=$("$node" --version)
  echo "== Node $label ($node)"
  prefix=$work/prefix-$label
  node_dir=$(dirname "$(readlink -f "$node")")
  run_path="$node_dir:$user_path"
  PATH=$run_path npm install --global --prefix "$prefix" --no-audit --no-fund --prefer-offline --loglevel=error "$tgz" >/dev/null || fail "npm i -g $tgz with Node $label"
  bin=$prefix/bin
  last_bin=$bin
  export_path="$bin:$run_path"
  [ "$(PATH=$export_path command -v node)" = "$node_dir/node" ] || fail "Node $label is not first on PATH"

  help=$(PATH=$export_path podid-migrate --help) || fail "podid-migrate --help (Node $label)"
  grep -q '^Usage: podid-migrate \[options\] \[command\]' <<<"$help" || fail "podid-migrate --help printed no usage line (Node $label)"
  [ "$(PATH=$export_path podid-migrate --version)" = "$version" ] || fail "podid-migrate --version is not $version (Node $label)"

  plugin_help=$(PATH=$export_path kubectl podid-migrate --help) || fail "kubectl podid-migrate --help (Node $label)"
  grep -q '^Usage: kubectl podid-migrate \[options\] \[command\]' <<<"$plugin_help" || fail "kubectl podid-migrate --help does not name itself kubectl podid-migrate (Node $label)"
  PATH=$export_path kubectl plugin list 2>/dev/null | grep -q "$bin/kubectl-podid_migrate" || fail "kubectl plugin list does not show $bin/kubectl-podid_migrate"
  [ "$(PATH=$export_path kubectl __complete podid-migrate ap 2>/dev/null | head -1)" = apply ] || fail "kubectl does not complete the plugin's commands (Node $label)"

  sandbox=$work/sandbox-$label
  sandboxes+=("$sandbox")
  source_line=$(cd "$work" && PATH=$export_path CI=true podid-migrate sandbox up --dir "$sandbox" --time-scale 20 --no-churn 2>"$work/sandbox-up.log") || {
    cat "$work/sandbox-up.log" "$sandbox/sandbox.log" >&2 || true
    fail "podid-migrate sandbox up (Node $label)"
  }
  [ "$source_line" = "source $sandbox/env" ] || fail "sandbox up printed \"$source_line\", not the source line"
  (
    # shellcheck disable=SC1090
    source "$sandbox/env"
    cd "$work"
    export PATH=$export_path CI=true
    plan=$(podid-migrate plan --journal "$work/journal-$label.json" --inventory "$work/inventory-$label.yaml") || fail "podid-migrate plan against the sandbox (Node $label)"
    grep -q '^Step 1 inventory' <<<"$plan" || fail "plan shows no step 1 (Node $label)"
    grep -q '^Plan: .* 0 blockers\.' <<<"$plan" || fail "plan has no summary line with 0 blockers (Node $label)"
    kind=$(podid-migrate plan -o json --journal "$work/journal-$label.json" --inventory "$work/inventory-$label.yaml" | "$node" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s);process.stdout.write(d.kind+" "+d.schemaVersion)})') || fail "plan -o json (Node $label)"
    [ "$kind" = "podid-migrate/plan 1" ] || fail "plan -o json has kind/schemaVersion \"$kind\" (Node $label)"
    # The plugin runs real commands too: plan wrote no journal, so status says so and exits 1.
    set +e
    status_err=$(kubectl podid-migrate status --journal "$work/journal-$label.json" 2>&1 >/dev/null)
    status_code=$?
    set -e
    [ "$status_code" = 1 ] && grep -q '^Error: no journal at ' <<<"$status_err" || fail "kubectl podid-migrate status without a journal: exit $status_code, \"$status_err\" (Node $label)"
  ) || exit 1
  PATH=$export_path podid-migrate sandbox down --dir "$sandbox" >/dev/null 2>&1 || fail "podid-migrate sandbox down (Node $label)"
  echo "Node $label: --help, --version, kubectl podid-migrate --help and completion, sandbox up, plan (table and JSON), sandbox down: ok"
done
echo "installed package: ok (Node ${nodes[*]})"
