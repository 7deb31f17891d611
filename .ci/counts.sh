# Sourced by .ci/run and .ci/aarch64: runs test commands and totals the
# counts of their last lines.
passed=0 failed=0 status=0
counts_log=$(mktemp) failures_log=$(mktemp)
trap 'rm -f "$counts_log" "$failures_log"' EXIT

# suite LABEL COMMAND…: runs COMMAND (its output streams through) and adds
# the counts of its last line, "LABELN passed, N failed", or one failure if
# there is no such line. A failing COMMAND sets status to 1.
suite() {
  local label=$1 line
  shift
  "$@" | tee "$counts_log" || status=1
  # Deno's "… => name ... FAILED (…)" and Bun's "(fail) name [… ms]" lines.
  # (A nested run's own "failed test:" lines are not counted twice.)
  grep -E '\.\.\. FAILED|^\(fail\) ' "$counts_log" |
    grep -v '^failed test: ' >>"$failures_log" || true
  line=$(tail -n 1 "$counts_log")
  if [[ $line =~ ^"$label"([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  else
    failed=$((failed + 1)) status=1
  fi
}

# failures: lists every failed test of the suites so far, one per line, so
# that the end of a long log says which ones failed.
failures() {
  local line
  while IFS= read -r line; do echo "failed test: $line"; done <"$failures_log"
}
