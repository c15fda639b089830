"""DDS stays on this machine under the tests' settings, on every distro they run on.

A node in its own process, with the environment the test session gives every process it starts,
lists the sockets it holds: each one is bound to the loopback address (or is the discovery
multicast group's receive socket), none to all interfaces or to the machine's external address.
And the profile variable is the one this distro's Fast DDS reads, so it prints no deprecation.
"""

import ipaddress
import os
import socket
import struct
import subprocess
import sys

from detr_ros.ros.loopback_dds import profile_variable

PROBE = r"""
import os, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("loopback_probe")
node.create_publisher(String, "probe", 10)
rclpy.spin_once(node, timeout_sec=0.3)
inodes = {os.readlink(f"/proc/self/fd/{fd}")[8:-1] for fd in os.listdir("/proc/self/fd")
          if os.path.islink(f"/proc/self/fd/{fd}") and os.readlink(f"/proc/self/fd/{fd}").startswith("socket:[")}
for table in ("udp", "tcp"):
    with open(f"/proc/self/net/{table}") as rows:
        next(rows)
        for row in rows:
            fields = row.split()
            if fields[9] in inodes:
                print("BOUND", table, fields[1])
node.destroy_node()
rclpy.shutdown()
"""


def bound_address(hex_address):
    """/proc/net/udp's 0100007F:1B58 -> 127.0.0.1 (little-endian IPv4, then the port)."""
    return ipaddress.IPv4Address(socket.inet_ntoa(struct.pack("<I", int(hex_address.split(":")[0], 16))))


def test_every_dds_socket_is_bound_to_loopback(ros_env):
    assert ros_env.get(profile_variable(ros_env.get("ROS_DISTRO"))), "the session's profile variable is not set"
    result = subprocess.run([sys.executable, "-c", PROBE], env=ros_env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    addresses = [bound_address(line.split()[2]) for line in result.stdout.splitlines() if line.startswith("BOUND")]
    assert addresses, result.stdout
    assert all(address.is_loopback or address.is_multicast for address in addresses), addresses
    assert "deprecated" not in result.stderr.lower(), result.stderr


def test_each_distro_reads_its_own_profile_variable():
    assert profile_variable("jazzy") == profile_variable("humble") == "FASTRTPS_DEFAULT_PROFILES_FILE"
    assert profile_variable("kilted") == profile_variable(None) == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert os.environ.get("ROS_DOMAIN_ID")  # the session's own domain
