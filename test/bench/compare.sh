#!/bin/sh
# compare.sh runs one benchmark of test/bench on a baseline commit and on the
# working tree, one after the other on the same machine, and prints each
# metric of both and their ratio (working tree ÷ baseline).
#
#   test/bench/compare.sh BASE_REV 'BenchmarkDeliveryThroughput/reuse/workers=8' [go test flags...]
#
# The baseline is exported with git archive into a temporary directory (no
# worktree is created), and this tree's test/bench is copied over its own,
# so both sides run the same benchmark code (it uses only the packages'
# public API). Example (the figures in README.md):
#
#   test/bench/compare.sh c6c800d 'DeliveryThroughput/reuse' -benchtime 5000x -count 3
set -eu
base=$1; bench=$2; shift 2
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$root" archive "$base" | tar -x -C "$tmp"
cp "$root"/test/bench/*.go "$tmp"/test/bench/
echo "# baseline $base" >&2
(cd "$tmp" && go test ./test/bench -run '^$' -bench "$bench" "$@") | tee "$tmp/base.txt" >&2
echo "# working tree $(git -C "$root" rev-parse --short HEAD)" >&2
(cd "$root" && go test ./test/bench -run '^$' -bench "$bench" "$@") | tee "$tmp/new.txt" >&2
# Averages per benchmark and metric, then the ratio.
awk '
FNR == 1 { side = (FILENAME ~ /base.txt$/) ? "base" : "new" }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i += 2) { k = name " " $(i+1); sum[side, k] += $i; n[side, k]++; keys[k] = 1 }
}
END {
  printf "%-60s %14s %14s %8s\n", "benchmark metric", "baseline", "this tree", "ratio"
  for (k in keys) if (n["base", k] && n["new", k]) {
    b = sum["base", k] / n["base", k]; w = sum["new", k] / n["new", k]
    printf "%-60s %14.4g %14.4g %8.2f\n", k, b, w, (b != 0 ? w / b : 0)
  }
}' "$tmp/base.txt" "$tmp/new.txt" | sort
