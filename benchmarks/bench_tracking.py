"""Tracking and 3D benchmark: identity quality, 3D centre error and the time they add per frame.

  .venv/bin/python benchmarks/bench_tracking.py [--model models/synthetic_rtdetr.onnx] [--out PATH]

Measures, with the shipped model:
  1. IDF1, MOTA, HOTA and identity switches per 100 object-frames (``detr-ros eval --tracking``) on a
     held-out synthetic video with traffic (objects entering, leaving, crossing), at the default
     threshold; targets IDF1 >= 0.90 and at most 1 switch per 100 object-frames; and IDF1 on two
     more such videos, as IDF1 varies from one video to the next;
  2. the 3D centre error, as a fraction of the distance, of the model's boxes placed with the
     synthetic depth, for objects fully in view (inside the frame and unoccluded); target median <= 2%;
  3. the time tracking plus 3D (the node's own code: its callbacks on the depth image and its
     camera_info, the tracker, the frame paired with its depth, placed in 3D and the Detection3DArray
     filled and published) take per frame at 30 objects, 640x480, against the node's per-frame time
     without them (the Detector call with the node's default model file and settings, the
     Detection2DArray filled and published); target <= 5%. The MarkerArray, built only
     while rviz (or anyone) listens, as the debug image is, is timed on its own.
Prints the figures and writes them as JSON.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import headline, write_result

from detr_ros.runtime import Detector
from detr_ros.runtime.depth import locate_boxes
from detr_ros.runtime.detections import Detections, iou_matrix
from detr_ros.synthetic.dataset import synthesize
from detr_ros.synthetic.video import SceneVideo
from detr_ros.training.evaluate_tracking import evaluate_tracking

REPO_ROOT = Path(__file__).resolve().parents[1]
# Seeds no training or test data uses: held-out videos. The tracking figures are the first video's;
# the others show how much IDF1 varies from one video to the next.
TRACKING_SEED, DEPTH_SEED, TIMING_SEED = 2026, 2027, 2028
SPREAD_SEEDS = (2029, 2030)


def tracking_quality(model, frames, seed):
    with tempfile.TemporaryDirectory() as folder:
        synthesize(folder, frames, seed=seed, video=True, traffic=True)
        return evaluate_tracking(model, folder)


def centre_errors(model, frames):
    """Relative 3D centre errors of matched, fully visible objects over ``frames`` frames (every third)."""
    detector = Detector(model)
    video = SceneVideo(320, 320, DEPTH_SEED, num_objects=6, traffic=True)
    errors = []
    for index in range(0, frames, 3):
        rendered = video.render(index)
        inside = [a for a in rendered.annotations if a.visible_fraction > 0.99]
        found = detector.detect(rendered.bgr, "bgr")
        if not inside or not len(found):
            continue
        iou = iou_matrix([a.box for a in inside], found.boxes)
        rows = [r for r in range(len(inside)) if iou[r].max() >= 0.5]
        placed = locate_boxes(rendered.depth_m, found.boxes[iou[rows].argmax(axis=1)], video.intrinsics)
        for row, centre, valid in zip(rows, placed.centres, placed.valid):
            truth = np.array(inside[row].position)
            errors.append(np.linalg.norm(centre - truth) / truth[2] if valid else np.inf)
    return np.array(errors)


def per_frame_cost(model, frames, objects):
    """The model file the node runs, and medians per 640x480 frame at ``objects`` objects, in ms: the node's
    work without tracking and 3D (Detector call, then the Detection2DArray filled and published), what
    tracking and 3D add (the node's own code: its callbacks on the 16UC1 depth image and its camera_info,
    the tracker, then the frame paired with its depth, placed in 3D and the Detection3DArray filled and
    published; in all and part by part), and the MarkerArray built and published."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile
    from std_msgs.msg import Header
    from vision_msgs.msg import Detection2DArray
    from visualization_msgs.msg import MarkerArray

    from detr_ros.ros import detection_cdr, messages, spatial_messages
    from detr_ros.ros.depth_messages import camera_info_message, decode_depth_message, depth_image_message
    from detr_ros.ros.detector_parameters import PARAMETERS, SPECS, camera_topics
    from detr_ros.ros.perception import Perception
    from detr_ros.runtime.cpu_int8 import choose_cpu_model

    # Objects hide one another: a third more are drawn, so that at least ``objects`` are in view in every
    # frame; the first ``objects`` of those are the frame's detections.
    video = SceneVideo(640, 480, TIMING_SEED, num_objects=objects * 4 // 3)
    rendered = [video.render(i) for i in range(frames)]
    in_view = [frame.annotations[:objects] for frame in rendered]
    if min(map(len, in_view)) < objects:
        raise RuntimeError(f"fewer than {objects} objects in view in a frame of the timing video")
    # Frames at 10 Hz; each with its depth image and camera_info, stamped alike, as an RGB-D camera sends them.
    headers = [Header(frame_id="camera", stamp=Time(sec=index // 10, nanosec=index % 10 * 100_000_000))
               for index in range(frames)]
    depth_images = [depth_image_message(header, frame.depth_m, "16UC1") for header, frame in zip(headers, rendered)]
    camera_infos = [camera_info_message(header, video.intrinsics) for header in headers]
    # The model file and inference settings the node runs with its defaults (on a CPU: the INT8 file beside).
    providers = SPECS["providers"].default
    node_model = choose_cpu_model(model, providers, SPECS["cpu_int8"].default).path
    detector = Detector(node_model, providers=providers, thread_spinning=SPECS["thread_spinning"].default)
    detector.detect(rendered[0].bgr, "bgr")  # warm-up
    node_ms, added_ms, markers_ms = [], [], []
    parts_ms = {"depth_and_camera_info_callbacks": [], "tracker": [], "pairing_3d_placement_and_array": []}
    names = list(detector.class_names)
    rclpy.init()
    node = rclpy.create_node("bench_tracking")
    try:
        topics = camera_topics("bench/image", False)
        values = {spec.name: spec.default for spec in PARAMETERS} | {"tracking": True,
                                                                    "depth_topics": ["bench/depth/image_raw"]}
        perception = Perception(node, values, [topics], QoSProfile(depth=1), names)
        # The callbacks the executor would call with each message.
        callbacks = {subscription.topic_name: subscription.callback for subscription in node.subscriptions}
        on_depth, on_camera_info = callbacks["/bench/depth/image_raw"], callbacks["/bench/depth/camera_info"]
        publish_2d = node.create_publisher(Detection2DArray, topics.detections, 10).publish
        publish_markers = node.create_publisher(MarkerArray, "markers", 10).publish
        threshold = SPECS["score_threshold"].default
        # The node's and the added work alternate frame by frame, so the machine's load weighs on both alike.
        for index, (frame, annotations, header) in enumerate(zip(rendered, in_view, headers)):
            boxes = np.array([a.box for a in annotations], np.float32).reshape(-1, 4)
            detections = Detections(boxes=boxes, scores=np.full(len(boxes), 0.9, np.float32),
                                    class_ids=np.array([a.class_index for a in annotations], np.int64))
            stamp_ns = messages.stamp_ns(header)
            started = time.perf_counter()
            detector.detect(frame.bgr, "bgr")
            labels = messages.class_labels(detections.class_ids, names, "index")
            publish_2d(detection_cdr.detection_2d_array(header, detections.boxes, detections.scores, labels))
            node_ms.append(1e3 * (time.perf_counter() - started))
            started = time.perf_counter()
            on_camera_info(camera_infos[index])
            on_depth(depth_images[index])
            received = time.perf_counter()
            published, ids = perception.track(0, detections, stamp_ns, threshold)
            tracked = time.perf_counter()
            # The node labels the tracked detections once, for the 2D and the 3D array: not an added cost.
            labels = messages.class_labels(published.class_ids, names, "index")
            labelled = time.perf_counter()
            perception.publish_3d(0, header, stamp_ns, published, ids, labels, (640, 480), "camera")
            finished = time.perf_counter()
            added_ms.append(1e3 * (finished - labelled + tracked - started))
            for part, ms in zip(parts_ms, (received - started, tracked - received, finished - labelled)):
                parts_ms[part].append(1e3 * ms)
            # The markers' boxes, placed again untimed: the node places each frame once, for both outputs.
            depth, encoding = decode_depth_message(depth_images[index])
            placed = locate_boxes(depth, published.boxes, video.intrinsics, encoding=encoding)
            started = time.perf_counter()
            publish_markers(spatial_messages.serialized_marker_array(header, "bench", placed, published.class_ids, ids,
                                                                     names))
            markers_ms.append(1e3 * (time.perf_counter() - started))
        cycles_ms = executor_cycles(node, detector, rendered[0], video.intrinsics)
        perception.close()
    finally:
        node.destroy_node()
        rclpy.shutdown()
    # The first frames start tracks (no ids yet); timing starts once tracks are running.
    return (Path(node_model).name, float(np.median(node_ms[5:])), float(np.median(added_ms[5:])),
            {part: round(float(np.median(times[5:])), 3) for part, times in parts_ms.items()},
            float(np.median(markers_ms[5:])), cycles_ms)


def executor_cycles(node, detector, frame, intrinsics, rounds=30):
    """Medians (ms) of the node's executor taking one message and running its callback, right after a
    Detector call: a 640x480 rgb8 image to a callback that does nothing, and a 16UC1 depth image and a
    camera_info to the node's own callbacks on ``node`` (Perception's). Taking a message means a pass over
    all of the node's waitables, then the message copied out of the middleware into a Python object: time
    the node spends on each message before its callback, which the per-frame time above leaves out."""
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from detr_ros.ros import messages
    from detr_ros.ros.depth_messages import camera_info_message, depth_image_message
    from detr_ros.ros.leader_follower import LeaderFollowerExecutor

    node.create_subscription(Image, "bench/image", lambda message: None, QoSProfile(depth=1))
    sent = {"image": (node.create_publisher(Image, "bench/image", 1),
                      messages.image_message(Header(), frame.bgr[:, :, ::-1], "rgb8")),
            "depth image": (node.create_publisher(Image, "bench/depth/image_raw", 1),
                            depth_image_message(Header(), frame.depth_m, "16UC1")),
            "camera_info": (node.create_publisher(CameraInfo, "bench/depth/camera_info", 1),
                            camera_info_message(Header(), intrinsics))}
    executor = LeaderFollowerExecutor(context=node.context)
    executor.add_node(node)
    time.sleep(1.0)  # the subscriptions meet the publishers
    cycles = {kind: [] for kind in sent}
    for round_index in range(rounds):
        for kind, (publisher, message) in sent.items():
            message.header.stamp.sec = 1000 + round_index  # after the frames timed before
            publisher.publish(message)
            time.sleep(0.02)  # delivered: the cycle then takes it without waiting
            detector.detect(frame.bgr, "bgr")
            started = time.perf_counter()
            executor.spin_once(timeout_sec=1.0)
            cycles[kind].append(1e3 * (time.perf_counter() - started))
    executor.remove_node(node)
    return {kind: round(float(np.median(times)), 3) for kind, times in cycles.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "synthetic_rtdetr.onnx")
    parser.add_argument("--frames", type=int, default=600, help="frames of the tracking video")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/)")
    args = parser.parse_args()

    tracking = tracking_quality(args.model, args.frames, TRACKING_SEED)
    idf1s = [tracking["idf1"]] + [tracking_quality(args.model, args.frames, seed)["idf1"] for seed in SPREAD_SEEDS]
    errors = centre_errors(args.model, 300)
    objects = 30
    node_model, node_ms, added_ms, parts_ms, markers_ms, cycles_ms = per_frame_cost(args.model, 60, objects)
    result = {
        "model": str(args.model),
        "tracking": {"video": f"320x320, {args.frames} frames, traffic, seed {TRACKING_SEED}", **tracking},
        "idf1_by_video": {str(seed): idf1 for seed, idf1 in zip((TRACKING_SEED, *SPREAD_SEEDS), idf1s)},
        "centre_error": {"video": f"320x320, traffic, seed {DEPTH_SEED}", "objects": int(errors.size),
                         "median_fraction": float(np.median(errors)), "p90_fraction": float(np.percentile(errors, 90)),
                         "unplaced": int(np.count_nonzero(~np.isfinite(errors)))},
        "cost": {"image": "640x480", "node_model": node_model, "objects_per_frame": objects,
                 "node_2d_p50_ms": round(node_ms, 2),
                 "tracking_and_3d_p50_ms": round(added_ms, 3), "fraction": round(added_ms / node_ms, 4),
                 "parts_p50_ms": parts_ms,
                 "markers_p50_ms": round(markers_ms, 3),
                 "executor_cycle_p50_ms": cycles_ms},
    }
    tracking, centre, cost = result["tracking"], result["centre_error"], result["cost"]
    print(f"bench_tracking: {args.model.name}")
    print(f"  tracking  IDF1 {tracking['idf1']:.3f}, MOTA {tracking['mota']:.3f}, HOTA {tracking['hota']:.3f}, "
          f"ID switches "
          f"{tracking['num_switches']} = {tracking['switches_per_100_objects']:.2f} per 100 object-frames "
          f"({tracking['num_objects']} object-frames)")
    print(f"  IDF1 by held-out video (seeds {TRACKING_SEED}, {', '.join(map(str, SPREAD_SEEDS))}): "
          f"{' / '.join(f'{idf1:.3f}' for idf1 in idf1s)}, mean {np.mean(idf1s):.3f}")
    print(f"  3D        centre error median {100 * centre['median_fraction']:.2f}%, p90 "
          f"{100 * centre['p90_fraction']:.2f}% of the distance ({centre['objects']} objects)")
    print(f"  cost      tracking + 3D {cost['tracking_and_3d_p50_ms']} ms per frame at "
          f"{cost['objects_per_frame']:.1f} objects = {100 * cost['fraction']:.2f}% of the node's "
          f"{cost['node_2d_p50_ms']} ms (Detector and 2D output); rviz markers {cost['markers_p50_ms']} ms more "
          "while subscribed")
    print("  of which  " + ", ".join(f"{part.replace('_', ' ')} {ms} ms" for part, ms in parts_ms.items()))
    print("  executor  taking a message and running its callback: " + ", ".join(
        f"{kind} {ms} ms" for kind, ms in cycles_ms.items()))
    headlines = [
        headline("IDF1 on a held-out synthetic video (traffic), default threshold", f"{tracking['idf1']:.3f}",
                 ">= 0.90"),
        headline("MOTA / HOTA (DetA, AssA) on that video",
                 f"{tracking['mota']:.3f} / {tracking['hota']:.3f} ({tracking['deta']:.3f}, {tracking['assa']:.3f})",
                 ""),
        headline(f"IDF1 of {len(idf1s)} held-out videos, each (mean)",
                 f"{' / '.join(f'{idf1:.3f}' for idf1 in idf1s)} ({np.mean(idf1s):.3f})", ""),
        headline("identity switches per 100 object-frames", f"{tracking['switches_per_100_objects']:.2f}", "<= 1"),
        headline("3D centre error / distance, objects fully in view (median)",
                 f"{100 * centre['median_fraction']:.2f}%", "<= 2%"),
        headline("tracking + 3D per frame at 30 objects / node per frame without them (640x480)",
                 f"{100 * cost['fraction']:.2f}% ({cost['tracking_and_3d_p50_ms']} of {cost['node_2d_p50_ms']} ms)",
                 "<= 5%"),
        headline("of that: depth and camera_info callbacks / tracker / pairing, 3D placement and Detection3DArray "
                 "filled and published (ms, medians)",
                 " / ".join(str(ms) for ms in parts_ms.values()), ""),
        headline("rviz MarkerArray built and published, only while subscribed (ms per frame, median; / node per frame)",
                 f"{cost['markers_p50_ms']} ({100 * cost['markers_p50_ms'] / cost['node_2d_p50_ms']:.2f}%)", ""),
        headline("the executor taking a message and running its callback, each (ms, medians; outside the node's "
                 "per-frame time above, which starts in the callback): " + " / ".join(cycles_ms),
                 " / ".join(str(ms) for ms in cycles_ms.values()), ""),
    ]
    write_result("bench_tracking", f"Tracking and 3D from depth ({args.model.name})", result, headlines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
