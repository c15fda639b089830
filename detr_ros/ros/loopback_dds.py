"""Keeping DDS on this machine: the settings the tests, the benchmarks and the demo run under.

config/fastdds_loopback.xml binds every Fast DDS socket to 127.0.0.1 (ROS_LOCALHOST_ONLY alone still
opens one on the external interface). Fast DDS reads the profile's path from a variable whose name
depends on its version: FASTRTPS_DEFAULT_PROFILES_FILE up to ROS 2 Jazzy (Fast DDS 2.x, which ignores
the new name, so the profile would silently not apply), FASTDDS_DEFAULT_PROFILES_FILE from Kilted on
(Fast DDS 3, which warns when it meets the old name). A user's real run keeps their system's settings.
"""

import os
import sys
from pathlib import Path

PACKAGE = "detr_ros"
PROFILE = Path("config") / "fastdds_loopback.xml"
OLD_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
NEW_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
DISTROS_WITH_OLD_VARIABLE = ("humble", "iron", "jazzy")
# Other ways of limiting discovery: with the profile in place they only add warnings or conflicts.
OVERRIDDEN = ("ROS_LOCALHOST_ONLY", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS")


def profile_variable(distro):
    """The variable this ROS 2 distro's Fast DDS reads the profile path from."""
    return OLD_VARIABLE if (distro or "").lower() in DISTROS_WITH_OLD_VARIABLE else NEW_VARIABLE


def loopback_profile():
    """config/fastdds_loopback.xml: in the ament share folder, the pip prefix, or the source tree."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE, print_warning=False)) / PROFILE)
    except (ImportError, LookupError, OSError):  # not installed through ament, or AMENT_PREFIX_PATH unset
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / PROFILE)
    candidates.append(Path(__file__).resolve().parents[2] / PROFILE)
    return next((path for path in candidates if path.is_file()), candidates[-1])


def keep_dds_on_loopback(environ, domain_id, profile=None):
    """Put ``environ`` (os.environ, or a child process's environment) on the loopback profile and
    ``domain_id``, with the one profile variable that the distro named by ROS_DISTRO reads."""
    variable = profile_variable(environ.get("ROS_DISTRO", os.environ.get("ROS_DISTRO")))
    for name in (OLD_VARIABLE, NEW_VARIABLE, *OVERRIDDEN):
        environ.pop(name, None)
    environ[variable] = str(profile or loopback_profile())
    environ["ROS_DOMAIN_ID"] = str(domain_id)
    return environ
