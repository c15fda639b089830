# Enter a detr_ros development environment:  source scripts/activate.sh
# (made by scripts/setup_env.sh; `make shell` opens a shell with it). DETR_ROS_VENV chooses which:
# .venv (the default: everything) or .venv-jazzy (the robot layers on ROS 2 Jazzy).
#
# Sets what ROS 2 needs on top of the virtual environment: a venv made of PyPI ROS wheels is an
# ament prefix (the wheels and the vision_msgs built from interfaces/ install their share/ and
# lib/ there) and names its distro in ROS_DISTRO, as a sourced ROS 2 does. DDS stays on loopback
# (config/fastdds_loopback.xml, see detr_ros/ros/loopback_dds.py) unless DETR_ROS_NETWORK_DDS=1:
# this environment is for development and tests; on a robot, source the system's ROS 2 and the
# colcon workspace instead.

_detr_ros_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_detr_ros_venv="${DETR_ROS_VENV:-.venv}"
case "$_detr_ros_venv" in /*) ;; *) _detr_ros_venv="$_detr_ros_root/$_detr_ros_venv" ;; esac
if [ ! -x "$_detr_ros_venv/bin/python" ]; then
    echo "detr_ros: no environment in $_detr_ros_venv yet; run: make env" >&2
    unset _detr_ros_root _detr_ros_venv
    return 1 2>/dev/null || exit 1
fi
# Leave the environment active before, if any (e.g. .venv when run_tests.sh enters .venv-jazzy from
# `make shell`): its lib/ left on LD_LIBRARY_PATH would be loaded where this one lacks a library of
# that name, mixing two distros' Fast DDS in one process.
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$VIRTUAL_ENV" != "$_detr_ros_venv" ]; then
    _detr_ros_without() {  # PATH-like value, then the entries to drop
        local entry kept="" entries
        IFS=: read -ra entries <<< "$1"
        for entry in "${entries[@]}"; do
            [ "$entry" = "$2" ] || [ "$entry" = "$3" ] || kept="${kept:+$kept:}$entry"
        done
        printf '%s' "$kept"
    }
    for _detr_ros_variable in AMENT_PREFIX_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH; do
        if [ -n "${!_detr_ros_variable:-}" ]; then
            export "$_detr_ros_variable=$(_detr_ros_without "${!_detr_ros_variable}" "$VIRTUAL_ENV" "$VIRTUAL_ENV/lib")"
        fi
    done
    unset -f _detr_ros_without
    unset _detr_ros_variable
    # A wheels environment named its distro; a system ROS 2's ROS_DISTRO stays.
    [ -z "${DETR_ROS_WHEELS_DISTRO:-}" ] || unset ROS_DISTRO DETR_ROS_WHEELS_DISTRO
fi
# shellcheck disable=SC1091
. "$_detr_ros_venv/bin/activate"
if [ -f "$VIRTUAL_ENV/.detr_ros_wheels_distro" ]; then
    ROS_DISTRO="$(cat "$VIRTUAL_ENV/.detr_ros_wheels_distro")"
    export ROS_DISTRO DETR_ROS_WHEELS_DISTRO="$ROS_DISTRO"
fi
case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
case ":${CMAKE_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;;
esac
# vision_msgs' C libraries, where the environment built it (system ROS case too).
case ":${LD_LIBRARY_PATH:-}:" in
    *":$VIRTUAL_ENV/lib:"*) ;;
    *) export LD_LIBRARY_PATH="$VIRTUAL_ENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
if [ "${DETR_ROS_NETWORK_DDS:-0}" != "1" ]; then
    # Fast DDS before ROS 2 Kilted reads only the old name; Kilted's warns about it.
    unset FASTRTPS_DEFAULT_PROFILES_FILE FASTDDS_DEFAULT_PROFILES_FILE
    case "${ROS_DISTRO:-}" in
        humble|iron|jazzy) export FASTRTPS_DEFAULT_PROFILES_FILE="$_detr_ros_root/config/fastdds_loopback.xml" ;;
        *) export FASTDDS_DEFAULT_PROFILES_FILE="$_detr_ros_root/config/fastdds_loopback.xml" ;;
    esac
fi
unset _detr_ros_root _detr_ros_venv
