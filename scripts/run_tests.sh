#!/usr/bin/env bash
# Runs the test suite inside the environment made by scripts/setup_env.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck disable=SC1091
. scripts/activate.sh
exec python -m pytest test -q -p no:cacheprovider --durations=15 "$@"
