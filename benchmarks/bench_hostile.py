"""Hostile-input benchmark: the detector node's peak memory when compressed images lie about their size.

  .venv/bin/python benchmarks/bench_hostile.py [--rounds 20] [--out PATH]

The node (its own process, shipped model, default max_image_pixels) receives good 640x480 JPEG
frames, then rounds of: a 69-byte PNG header claiming 40000x40000, a JPEG claiming 60000x60000 and
a decompression bomb (a 20000x12000 PNG of zeros, about 233 KB), each followed by a good frame;
then one image just within the limit. Measured: the node's peak resident memory (VmHWM) after each
phase, whether every good frame was answered, and, for contrast, the peak of a bare process that
decodes the bomb with cv2.imdecode and one that reads it with decode_image. Prints the figures and
writes them as JSON. DDS stays on loopback.
"""

import argparse
import array
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from bench_node import REPO_ROOT, DetectorUnderTest, hermetic_dds
from results import headline, write_result

sys.path.insert(0, str(REPO_ROOT / "test" / "robot"))  # the crafted images of the hostile-input tests
from hostile_images import jpeg_claiming, png_bomb, png_header_claiming  # noqa: E402

TOPIC = "hostile/image/compressed"
BOMB_SIZE = (20000, 12000)
WITHIN_LIMIT_SIZE = (7000, 7000)  # 49 megapixels, under the default limit of 50


def peak_mib(pid):
    """Peak resident memory (VmHWM) of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM for process {pid}")


def bare_decode_peak_mib(path, guarded):
    """Peak memory of a fresh process that decodes ``path`` with cv2.imdecode, or with decode_image."""
    decode = ("from detr_ros.runtime.encoded_images import decode_image, EncodedImageError\n"
              "try:\n    decode_image(data)\nexcept EncodedImageError as error:\n    print(error)\n" if guarded
              else "cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)\n")
    code = (f"import cv2, numpy as np\ndata = open({str(path)!r}, 'rb').read()\n{decode}"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024.0


class Probe(DetectorUnderTest):
    """Publisher of CompressedImage and subscriber of the detections, with the node as a subprocess."""

    def __init__(self):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage
        from vision_msgs.msg import Detection2DArray

        super().__init__("bench_hostile_probe", {
            "model_path": str(REPO_ROOT / "models" / "synthetic_rtdetr.onnx"), "providers": ["cpu"],
            "image_topics": [TOPIC], "qos_reliability": "reliable", "qos_depth": 100, "publish_debug_image": False})
        self.message_type = CompressedImage
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.answered = set()
        self.node.create_subscription(Detection2DArray, "hostile/detections",
                                      lambda m: self.answered.add(m.header.stamp.sec), reliable)
        self.publisher = self.node.create_publisher(CompressedImage, TOPIC, reliable)
        self.sent_good = 0

    def publish(self, format_field, data, sec=0):
        message = self.message_type(format=format_field, data=array.array("B", data))
        message.header.stamp.sec = sec
        self.publisher.publish(message)

    def good_frame_answered(self, jpeg):
        """Publish a good frame and wait for its detections."""
        self.sent_good += 1
        stamp = self.sent_good
        self.publish("jpeg", jpeg, stamp)
        return self.spin_until(lambda: stamp in self.answered, 60.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of hostile images, each with a good frame")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/bench_hostile.json)")
    args = parser.parse_args(argv)
    hermetic_dds()
    from detr_ros.synthetic.video import SceneVideo

    jpeg = cv2.imencode(".jpg", SceneVideo(640, 480, seed=0).frame(0)[0])[1].tobytes()
    bomb = png_bomb(*BOMB_SIZE)
    within_limit = png_bomb(*WITHIN_LIMIT_SIZE)
    hostile = [("png", png_header_claiming(40000, 40000)), ("jpeg", jpeg_claiming(60000, 60000)), ("png", bomb)]
    with tempfile.NamedTemporaryFile(suffix=".png") as bomb_file:
        bomb_file.write(bomb)
        bomb_file.flush()
        bare_unguarded = bare_decode_peak_mib(bomb_file.name, guarded=False)
        bare_guarded = bare_decode_peak_mib(bomb_file.name, guarded=True)

    probe = Probe()
    try:
        if not probe.spin_until(lambda: probe.publisher.get_subscription_count() > 0, 60.0):
            raise RuntimeError("the detector did not subscribe within 60 s")
        answered = [probe.good_frame_answered(jpeg) for _ in range(20)]
        baseline = peak_mib(probe.process.pid)
        for _ in range(args.rounds):
            for format_field, data in hostile:
                probe.publish(format_field, data)
            answered.append(probe.good_frame_answered(jpeg))
        after_hostile = peak_mib(probe.process.pid)
        probe.publish("png", within_limit)
        answered.append(probe.good_frame_answered(jpeg))
        after_within_limit = peak_mib(probe.process.pid)
        alive = probe.process.poll() is None
    finally:
        exit_code = probe.close()

    result = {
        "bomb": {"size": f"{BOMB_SIZE[0]}x{BOMB_SIZE[1]}", "bytes": len(bomb)},
        "within_limit_image": {"size": f"{WITHIN_LIMIT_SIZE[0]}x{WITHIN_LIMIT_SIZE[1]}", "bytes": len(within_limit)},
        "rounds": args.rounds,
        "good_frames_answered": f"{sum(answered)}/{len(answered)}",
        "node_alive_after_hostile_input": alive,
        "node_peak_rss_mib": {"after_good_frames": round(baseline, 1), "after_hostile_rounds": round(after_hostile, 1),
                              "after_an_image_within_the_limit": round(after_within_limit, 1)},
        "bare_process_peak_rss_mib_decoding_the_bomb": {"cv2_imdecode": round(bare_unguarded, 1),
                                                        "decode_image": round(bare_guarded, 1)},
        "detector_exit_code": exit_code,
    }
    peaks = result["node_peak_rss_mib"]
    print(f"bench_hostile: {args.rounds} rounds of 3 hostile images; good frames answered "
          f"{result['good_frames_answered']}; node alive: {alive}; exit status {exit_code}")
    print(f"  node peak RSS: {peaks['after_good_frames']} MiB after good frames, {peaks['after_hostile_rounds']} MiB "
          f"after the hostile rounds, {peaks['after_an_image_within_the_limit']} MiB after one "
          f"{result['within_limit_image']['size']} image (within the limit)")
    print(f"  the {result['bomb']['size']} bomb ({len(bomb)} bytes) in a bare process: cv2.imdecode peaks at "
          f"{bare_unguarded:.0f} MiB, decode_image at {bare_guarded:.0f} MiB (refused from its header)")
    headlines = [
        headline("detector node peak RSS growth over 3 x 20 hostile images (size claims, a 20000x12000 bomb)",
                 f"{after_hostile - baseline:+.1f} MiB ({peaks['after_hostile_rounds']} MiB)", "none"),
        headline("peak RSS decoding the 20000x12000 PNG bomb: cv2.imdecode / decode_image",
                 f"{bare_unguarded:.0f} / {bare_guarded:.0f} MiB"),
    ]
    write_result("bench_hostile", "Detector node under hostile compressed images", result, headlines, args.out)
    return 0 if alive and all(answered) and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
