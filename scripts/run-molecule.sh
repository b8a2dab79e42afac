#!/usr/bin/env bash
# Run molecule scenarios, at most JOBS at a time, each on its own lab port offset; print every log at the end.
#   scripts/run-molecule.sh JOBS SCENARIO:OFFSET ...
# Each scenario boots a whole lab (7 systemd hosts); more than two labs at once overload a 2-core machine
# until the tests' own waits time out, so the default is two. Exits non-zero if any scenario failed.
set -u
jobs=$1
shift
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/.venv/bin"
status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT

for dir in "$here"/molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$dir")")
    case " $* " in
        *" $name:"*) ;;
        *) echo "molecule/$name is not in the scenario list"; exit 1 ;;
    esac
done

run_one() {
    scenario=${1%%:*}
    offset=${1##*:}
    if MOLECULE_LAB_PORT_OFFSET=$offset PATH="$bin:$PATH" "$bin/molecule" test -s "$scenario" > "$here/.molecule-$scenario.log" 2>&1; then
        echo ok > "$status_dir/$scenario"
    else
        echo failed > "$status_dir/$scenario"
    fi
}

# A pool: the next scenario starts as soon as any one finishes.
running=0
for entry in "$@"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    run_one "$entry" &
    running=$((running + 1))
done
wait

# Passing scenarios first, then every failing one's whole log, then a summary naming the failed tests: CI shows only
# the end of the output.
failed=""
for entry in "$@"; do
    scenario=${entry%%:*}
    if [ "$(cat "$status_dir/$scenario" 2>/dev/null)" = ok ]; then
        echo "== molecule $scenario (ok)"
        cat "$here/.molecule-$scenario.log"
    else
        failed="$failed $scenario"
    fi
done
for scenario in $failed; do
    echo "== molecule $scenario ($(cat "$status_dir/$scenario" 2>/dev/null || echo 'did not run'))"
    cat "$here/.molecule-$scenario.log"
done
if [ -n "$failed" ]; then
    for scenario in $failed; do
        echo "== molecule $scenario: failed tests"
        sed 's/\x1b\[[0-9;]*m//g' "$here/.molecule-$scenario.log" \
            | grep -E '(FAILED|ERROR) |^E? *(AssertionError|assert )|Failed:|CRITICAL|in [0-9.]+s' | tail -n 40
    done
    echo "molecule scenarios failed:$failed"
    exit 1
fi
echo "molecule: all $# scenarios passed"
