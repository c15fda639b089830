"""Keeping DDS on this machine: the settings the tests, the benchmarks and the demo run under.

config/fastdds_loopback.xml binds every Fast DDS socket to 127.0.0.1 (ROS_LOCALHOST_ONLY alone still
opens one on the external interface). Fast DDS reads the profile's path from a variable whose name
depends on its version: FASTRTPS_DEFAULT_PROFILES_FILE up to ROS 2 Jazzy (Fast DDS 2.x, which ignores
the new name, so the profile would silently not apply), FASTDDS_DEFAULT_PROFILES_FILE from Kilted on
(Fast DDS 3, which warns when it meets the old name). A user's real run keeps their system's settings.
"""

import os
from pathlib import Path

from detr_ros.package_files import package_file, package_file_candidates

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
    return package_file(PROFILE) or package_file_candidates(PROFILE)[-1]


def keep_dds_on_loopback(environ, domain_id, profile=None):
    """Put ``environ`` (os.environ, or a child process's environment) on the loopback profile and
    ``domain_id``, with the one profile variable that the distro named by ROS_DISTRO reads."""
    variable = profile_variable(environ.get("ROS_DISTRO", os.environ.get("ROS_DISTRO")))
    for name in (OLD_VARIABLE, NEW_VARIABLE, *OVERRIDDEN):
        environ.pop(name, None)
    environ[variable] = str(profile or loopback_profile())
    environ["ROS_DOMAIN_ID"] = str(domain_id)
    return environ
