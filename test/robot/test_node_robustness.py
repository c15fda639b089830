"""The detector under bad input and overload, in its own process over real DDS with the shipped model.

- 1000 malformed messages (raw and compressed) interleaved with good frames: the node stays up,
  answers every good frame and counts every reject in /diagnostics;
- hostile compressed images (headers claiming 40000x40000 or 60000x60000 pixels, a decompression
  bomb, JPEGs the decoder only warns about) between good frames: rejected before decoding or
  decoded with one throttled warning, every good frame answered;
- frames far faster than inference: the newest frames are answered, frame age stays within a
  couple of inference cycles (measured in the same run), drops are counted.
"""

import array
import time

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from detr_ros.ros import messages
from detr_ros.synthetic.video import SceneVideo
from hostile_images import jpeg_claiming, png_bomb, png_header_claiming
from node_testing import SHIPPED_MODEL, detections_by_stamp, stamp_ns, start_detector
from ros_testing import spin_until

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def malformed_images():
    """Image messages each broken in one way the node must reject."""
    def image(encoding="rgb8", width=8, height=4, step=24, size=96, is_bigendian=0):
        return Image(encoding=encoding, width=width, height=height, step=step, is_bigendian=is_bigendian,
                     data=array.array("B", bytes(size)))

    return [
        image(size=95),  # data shorter than step * height
        image(size=97),  # longer
        image(step=23, size=92),  # step smaller than a row
        image(width=0, step=0, size=0),
        image(height=2_000_000_000, size=24),  # a huge claim with little data
        image(encoding="rgb16"),
        image(encoding=""),
        image(encoding="yuv422", width=7, step=14, size=56),  # odd width for 4:2:2
        image(encoding="mono16", step=8, size=32),  # step shorter than 16-bit rows
        image(encoding="bayer_rggb8", width=1, height=1, step=1, size=1),
    ]


def malformed_compressed(rgb):
    jpeg = messages.compressed_image_message(Header(), rgb, "jpeg").data.tobytes()
    png = messages.compressed_image_message(Header(), rgb, "png").data.tobytes()
    garbage = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    cases = [
        ("jpeg", jpeg[: len(jpeg) // 2]),  # truncated
        ("jpeg", b"\xff\xd8" + garbage + b"\xff\xd9"),  # right markers, corrupt body
        ("jpeg", b""),
        ("jpeg", garbage),
        ("png", png[: len(png) // 3]),
        ("png", jpeg),  # format says png, data is jpeg
        ("h264", jpeg),
        ("", b"GIF89a" + garbage),
        ("jpeg", png[:100]),
        ("rgb8; jpeg compressed bgr8", jpeg[:-40]),
    ]
    return [CompressedImage(format=f, data=array.array("B", d)) for f, d in cases]


def stamped(message, sec, nanosec=0):
    message.header.stamp.sec, message.header.stamp.nanosec = sec, nanosec
    return message


def latest_status(diagnostics):
    """{status name: {key: value}} from the newest DiagnosticArray."""
    return {s.name: {kv.key: kv.value for kv in s.values} for s in diagnostics[-1].status} if diagnostics else {}


def test_malformed_messages_are_counted_and_good_frames_still_answered(ros_env, ros_context, tmp_path):
    detector = start_detector(ros_env, tmp_path, {
        "image_topics": ["plain/image", "packed/image/compressed"], "qos_reliability": "reliable", "qos_depth": 100})
    probe = Node("malformed_probe", context=ros_context)
    found, diagnostics = {}, []
    for camera in ("plain", "packed"):
        probe.create_subscription(Detection2DArray, f"{camera}/detections",
                                  lambda m: found.setdefault(stamp_ns(m.header), m), RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    raw = probe.create_publisher(Image, "plain/image", RELIABLE)
    packed = probe.create_publisher(CompressedImage, "packed/image/compressed", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(320, 240, seed=5).frame(0)[0], cv2.COLOR_BGR2RGB)
    bad_raw, bad_packed = malformed_images(), malformed_compressed(rgb)
    rounds, per_round = 25, 20  # 25 * (20 raw + 20 compressed) = 1000 malformed messages
    try:
        assert spin_until(ros_context, [probe], lambda: raw.get_subscription_count() and packed.get_subscription_count(),
                          20.0)
        for index in range(rounds):
            for k in range(per_round):
                raw.publish(bad_raw[k % len(bad_raw)])
                packed.publish(bad_packed[k % len(bad_packed)])
            good_raw = stamped(messages.image_message(Header(frame_id="plain"), rgb, "rgb8"), 100 + index)
            good_packed = stamped(messages.compressed_image_message(Header(frame_id="packed"), rgb, "jpeg"), 200 + index)
            raw.publish(good_raw)
            packed.publish(good_packed)
            wanted = {stamp_ns(good_raw.header), stamp_ns(good_packed.header)}
            assert spin_until(ros_context, [probe], lambda: wanted <= set(found), 30.0), \
                f"good frames of round {index} not answered:\n{detector.output}"
        total = rounds * per_round * 2

        def all_counted():
            # A diagnostics period can end between a frame's publish and its count: wait for both.
            status = latest_status(diagnostics)
            return (sum(int(v["rejected"]) for v in status.values()) == total
                    and all(int(v["published"]) == rounds for v in status.values()))

        assert spin_until(ros_context, [probe], all_counted, 10.0), latest_status(diagnostics)
        assert detector.process.poll() is None, "the node keeps serving"
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()

    status = latest_status(diagnostics)
    assert [int(v["rejected"]) for v in status.values()] == [rounds * per_round] * 2
    assert all(int(v["published"]) == rounds for v in status.values())
    assert "rejected a message on" in detector.output  # the throttled warning
    assert detector.output.count("rejected a message on") < 100, "warnings are throttled"
    assert {m.header.frame_id for m in found.values()} == {"plain", "packed"}


def hostile_compressed(rgb):
    """(format, data, rejected) of compressed images made to hurt a decoder."""
    jpeg = messages.compressed_image_message(Header(), rgb, "jpeg").data.tobytes()
    stray = jpeg[:-2] + bytes(range(1, 41)) + jpeg[-2:]  # bytes before the end marker: libjpeg only warns
    return [
        ("png", png_header_claiming(40000, 40000), True),  # 69 bytes
        ("jpeg", jpeg_claiming(60000, 60000), True),
        ("png", png_bomb(4000, 3000), True),  # 12 megapixels of zeros, over the node's limit below
        ("png", png_header_claiming(40000, 40000)[:30], True),
        ("jpeg", jpeg[:200] + b"\xff\xd9", True),
        ("jpeg", stray, False),
    ]


def test_hostile_compressed_images_are_rejected_before_decoding_and_good_frames_answered(
        ros_env, ros_context, tmp_path):
    detector = start_detector(ros_env, tmp_path, {"image_topics": ["cam/image/compressed"], "qos_reliability": "reliable",
                                                   "qos_depth": 100, "max_image_pixels": 4_000_000})
    probe = Node("hostile_probe", context=ros_context)
    found, diagnostics = detections_by_stamp(probe, "cam/detections"), []
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    publisher = probe.create_publisher(CompressedImage, "cam/image/compressed", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(320, 240, seed=5).frame(0)[0], cv2.COLOR_BGR2RGB)
    cases = hostile_compressed(rgb)
    rounds = 10
    try:
        assert spin_until(ros_context, [probe], publisher.get_subscription_count, 20.0)
        for index in range(rounds):
            for format_field, data, _ in cases:
                publisher.publish(stamped(CompressedImage(format=format_field, data=array.array("B", data)), 1, index))
            good = stamped(messages.compressed_image_message(Header(frame_id="cam"), rgb, "jpeg"), 100 + index)
            publisher.publish(good)
            assert spin_until(ros_context, [probe], lambda: stamp_ns(good.header) in found, 30.0), \
                f"good frame of round {index} not answered:\n{detector.output}"
        rejected = rounds * sum(reject for _, _, reject in cases)

        def counted():
            status = latest_status(diagnostics)
            return status and int(next(iter(status.values()))["rejected"]) == rejected

        assert spin_until(ros_context, [probe], counted, 10.0), latest_status(diagnostics)
        assert detector.process.poll() is None, "the node keeps serving"
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()
    output = detector.output
    assert "40000x40000 pixels, over the limit of 4000000" in output or "60000x60000" in output
    assert "the decoder warned on cam/image/compressed: Corrupt JPEG data" in output
    # libjpeg's own lines go through the node's throttled log, not straight to the terminal.
    assert output.count("Corrupt JPEG data") < rounds, output


def test_overload_answers_newest_frames_with_bounded_age(ros_env, ros_context, tmp_path):
    detector = start_detector(ros_env, tmp_path, {"image_topics": ["fast/image"]})  # default: best effort, depth 1
    probe = Node("overload_probe", context=ros_context)
    answers, diagnostics = [], []
    probe.create_subscription(Detection2DArray, "fast/detections",
                              lambda m: answers.append((stamp_ns(m.header), time.monotonic_ns())), RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    publisher = probe.create_publisher(Image, "fast/image", RELIABLE)
    frames = [messages.image_message(Header(frame_id="fast"), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), "rgb8")
              for frame in (SceneVideo(640, 480, seed=9).frame(i)[0] for i in range(4))]
    sent_at = {}  # stamp -> monotonic ns at publish
    try:
        assert spin_until(ros_context, [probe], publisher.get_subscription_count, 20.0)
        # Warm up (the first inference is slower than the rest), repeating the frame while the
        # best-effort subscription may not have matched the publisher yet.
        for attempt in range(60):
            publisher.publish(stamped(frames[0], 1, attempt))
            if spin_until(ros_context, [probe], lambda: answers, 0.5):
                break
        assert spin_until(ros_context, [probe], lambda: answers, 30.0)
        answers.clear()
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(probe)
        end = time.monotonic() + 4.0
        index = 0
        while time.monotonic() < end:  # as fast as this process can publish: hundreds of Hz
            message = stamped(frames[index % len(frames)], 10 + index // 1000, (index % 1000) * 1_000_000)
            sent_at[stamp_ns(message.header)] = time.monotonic_ns()
            publisher.publish(message)
            index += 1
            executor.spin_once(timeout_sec=0.002)
        executor.remove_node(probe)
        executor.shutdown()
        spin_until(ros_context, [probe], lambda: False, 2.5)  # last answer and one more diagnostics period
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()

    stamps = [stamp for stamp, _ in answers]
    assert len(sent_at) > 2 * len(stamps) > 0, f"{len(sent_at)} published, {len(stamps)} answered"
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "never an older frame after a newer one"
    cycles = np.diff([arrived for _, arrived in answers]) / 1e9
    cycle = float(np.median(cycles))
    ages = np.array([(arrived - sent_at[stamp]) / 1e9 for stamp, arrived in answers])
    # A frame waits at most one cycle for the model to be free, then one cycle of inference: age stays within
    # a few cycles instead of growing with the backlog. (Percentiles: this busy process publishes
    # hundreds of frames a second, so it sometimes notices an answer late.)
    assert np.percentile(ages, 90) <= 3 * cycle + 0.1, f"frame ages {ages} with inference cycles of {cycle:.3f} s"
    third = len(ages) // 3
    assert np.median(ages[-third:]) <= 2 * np.median(ages[:third]) + 0.05, f"frame age grows: {ages}"
    status = next(iter(latest_status(diagnostics).values()))
    dropped, published, received = int(status["dropped"]), int(status["published"]), int(status["received"])
    assert dropped > 0, status
    assert published + dropped <= received <= published + dropped + 1, status
    # The wait before the model is a part of each frame's overhead (receive to publish, less the model),
    # in every diagnostics period of the run that had frames.
    busy = [{kv.key: kv.value for kv in message.status[0].values} for message in diagnostics]
    busy = [values for values in busy if values["wait_p50_ms"] != "n/a"]
    assert busy and all(0.0 < float(v["wait_p50_ms"]) <= float(v["node_overhead_p50_ms"]) for v in busy), busy
    assert SHIPPED_MODEL.name in detector.output
