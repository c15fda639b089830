#!/usr/bin/env bash
# Runs one command inside the environment made by scripts/setup_env.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "$root/scripts/activate.sh"
exec "$@"
