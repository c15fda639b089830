"""Which camera frame sizes arrive over DDS, with best-effort and reliable QoS, under three Fast DDS setups.

  .venv/bin/python benchmarks/bench_dds_sizes.py [--frames 5] [--out PATH]

A publisher process sends rgb8 sensor_msgs/Image frames (640x480 to 8000x6000) to a subscriber
process on the same machine; the subscriber counts what arrives. Setups, all kept on 127.0.0.1:
  shm_16mib      config/fastdds_loopback.xml: shared memory with a 16 MiB segment, plus UDP;
  shm_default    the same with Fast DDS's default shared-memory segment (512 KiB);
  udp_only       UDP alone, as between two machines.
Prints a table and writes the counts as JSON.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_node import REPO_ROOT, hermetic_dds
from results import headline, write_result

SIZES = ((640, 480), (1920, 1080), (3840, 2160), (8000, 6000))
QOS = ("best_effort", "reliable")
TOPIC = "dds_sizes/image"


def profiles(folder):
    """setup name -> Fast DDS XML profile path, made from the shipped loopback profile."""
    shipped = (REPO_ROOT / "config" / "fastdds_loopback.xml").read_text()
    default_segment = re.sub(r"\s*<segment_size>\d+</segment_size>", "", shipped)
    udp_only = shipped.replace("<transport_id>detr_ros_shm</transport_id>\n          <transport_id>detr_ros_loopback_udp",
                               "<transport_id>detr_ros_loopback_udp")
    assert default_segment != shipped and udp_only != shipped
    paths = {}
    for name, text in (("shm_16mib", shipped), ("shm_default", default_segment), ("udp_only", udp_only)):
        paths[name] = Path(folder) / f"{name}.xml"
        paths[name].write_text(text)
    return paths


def _qos(reliability):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


def subscribe(reliability, seconds):
    """Child process: count the frames that arrive within ``seconds``; print the count as JSON."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("dds_sizes_subscriber")
    stamps = set()
    node.create_subscription(Image, TOPIC, lambda m: stamps.add(m.header.stamp.sec), _qos(reliability))
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"received": len(stamps)}), flush=True)


def publish(reliability, width, height, frames):
    """Child process: wait for the subscriber, then publish ``frames`` rgb8 frames half a second apart."""
    import array

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    rclpy.init()
    node = Node("dds_sizes_publisher")
    publisher = node.create_publisher(Image, TOPIC, _qos(reliability))
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    time.sleep(1.0)  # let the subscriber's side of the match settle too
    message = Image(width=width, height=height, encoding="rgb8", step=3 * width,
                    data=array.array("B", bytes(3 * width * height)))
    for index in range(1, frames + 1):
        message.header.stamp.sec = index
        publisher.publish(message)
        time.sleep(0.5)
    time.sleep(2.0)  # a reliable writer resends what is missing before the process ends


def run_case(profile, reliability, width, height, frames):
    env = dict(os.environ)
    variable = next(v for v in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE") if v in env)
    env[variable] = str(profile)
    seconds = 12 + frames * (2 if width * height > 10_000_000 else 1)
    subscriber = subprocess.Popen([sys.executable, __file__, "--child", "subscribe", reliability, str(seconds)],
                                  env=env, stdout=subprocess.PIPE, text=True)
    subscriber.stdout.readline()  # ready
    subprocess.run([sys.executable, __file__, "--child", "publish", reliability, str(width), str(height), str(frames)],
                   env=env, timeout=seconds + 30, check=True)
    out, _ = subscriber.communicate(timeout=seconds + 30)
    return json.loads(out.strip().splitlines()[-1])["received"]


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["--child"]:
        role, *values = sys.argv[2:]
        if role == "subscribe":
            return subscribe(values[0], float(values[1]))
        return publish(values[0], *map(int, values[1:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    hermetic_dds()
    table = {}
    with tempfile.TemporaryDirectory() as folder:
        for setup, profile in profiles(folder).items():
            for reliability in QOS:
                for width, height in SIZES:
                    received = run_case(profile, reliability, width, height, args.frames)
                    table.setdefault(setup, {}).setdefault(reliability, {})[f"{width}x{height}"] = received
                    print(f"{setup:12} {reliability:12} {width}x{height} rgb8 ({3 * width * height / 2**20:6.1f} MiB):"
                          f" {received}/{args.frames} received", flush=True)
    result = {"frames_sent": args.frames, "received": table}
    headlines = [headline(f"{setup}, {reliability}: frames received of {args.frames} "
                          f"({', '.join(f'{w}x{h}' for w, h in SIZES)})",
                          " / ".join(str(table[setup][reliability][f"{w}x{h}"]) for w, h in SIZES))
                 for setup in table for reliability in QOS]
    write_result("bench_dds_sizes", "Camera frame sizes over DDS on one machine", result, headlines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
