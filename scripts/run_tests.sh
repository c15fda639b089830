#!/usr/bin/env bash
# Runs the test suites in the environments made by scripts/setup_env.sh:
#   every test on the main environment's ROS 2 (Kilted wheels, or the system's ROS 2), then
#   the robot layers' tests (test/robot: runtime and node, no torch) on ROS 2 Jazzy (.venv-jazzy).
# Each prints its own pytest summary; the run fails if either fails. Arguments go to pytest on the
# main environment alone (then the Jazzy suite is left out), e.g. scripts/run_tests.sh -k letterbox
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
status=0

run_suite() {  # venv, then pytest arguments
    local venv="$1"
    shift
    # A subshell each, so that one environment's variables never reach the other's run.
    # shellcheck disable=SC1091
    (DETR_ROS_VENV="$venv" . scripts/activate.sh || exit 1
     echo "== detr_ros tests on ROS 2 ${ROS_DISTRO:-?} ($venv)"
     exec python -m pytest -q -p no:cacheprovider --durations=15 "$@") || status=1
}

run_suite .venv "${@:-test}"
if [ $# -eq 0 ] && [ -x .venv-jazzy/bin/python ]; then
    run_suite .venv-jazzy test/robot
fi
exit "$status"
