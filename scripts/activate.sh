# Enter the detr_ros development environment:  source scripts/activate.sh
# (made by scripts/setup_env.sh; `make shell` opens a shell with it).
#
# Sets what ROS 2 needs on top of the virtual environment: the venv is an ament
# prefix (the PyPI ROS wheels and the vision_msgs built from interfaces/ install
# their share/ and lib/ there). DDS stays on loopback (config/fastdds_loopback.xml)
# unless DETR_ROS_NETWORK_DDS=1: this environment is for development and tests;
# on a robot, source the system's ROS 2 and the colcon workspace instead.

_detr_ros_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -x "$_detr_ros_root/.venv/bin/python" ]; then
    echo "detr_ros: no environment in $_detr_ros_root/.venv yet; run: make env" >&2
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_detr_ros_root/.venv/bin/activate"
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
    export FASTDDS_DEFAULT_PROFILES_FILE="$_detr_ros_root/config/fastdds_loopback.xml"
fi
unset _detr_ros_root
