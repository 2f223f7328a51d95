#!/usr/bin/env bash
# Instructions, not seconds: the simulator's hot path (20,000 records through one trivial
# auto-commit consumer, release build) counted by callgrind. Repeatable whatever else the machine
# does, so it compares two commits where wall-clock figures are too noisy. Usage:
#   ci/instructions.sh [records]      (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-20000}"
command -v valgrind >/dev/null 2>&1 || { echo "ci/instructions.sh: valgrind is needed" >&2; exit 1; }
cargo bench --bench kit --no-run 2>&1 | tail -n 1
bench=$(ls -t target/release/deps/kit-* | grep -v '\.d$' | head -n 1)
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" "$bench" --profile-records "$records" 2>&1 \
  | grep -E 'records/s|Collected' || true
echo "instructions: $(grep -E '^(summary|totals):' "$out" | head -n 1 | awk '{print $2}')"
rm -f "$out"
