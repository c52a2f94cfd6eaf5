#!/usr/bin/env bash
# Runs `avsoak watch` as the action's inputs say: AVSOAK_COMMAND (the program and its
# arguments, split as a shell splits them), AVSOAK_EXPECT, AVSOAK_OUT, AVSOAK_OPTIONS,
# and AVSOAK_BASELINE with AVSOAK_BASELINES to gate. Exits with avsoak's code: 0 passed,
# 1 the outcome or the gate failed, 2 an error. On GitHub, the summary goes to the job's
# page.
set -euo pipefail
: "${AVSOAK_COMMAND:?AVSOAK_COMMAND names the program to watch}"
avsoak="${AVSOAK:-avsoak}"
out="${AVSOAK_OUT:-avsoak-run}"
eval "program=($AVSOAK_COMMAND)"
eval "options=(${AVSOAK_OPTIONS:-})"
args=(watch --expect "${AVSOAK_EXPECT:-clean}" --out "$out" "${options[@]}")
if [[ -n "${AVSOAK_BASELINE:-}" ]]; then
    args+=(--baseline "$AVSOAK_BASELINE" --baselines "${AVSOAK_BASELINES:-avsoak/baselines}")
fi
code=0
"$avsoak" "${args[@]}" -- "${program[@]}" || code=$?
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$out/summary.md" ]]; then
    cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$code"
