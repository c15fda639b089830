"""Tracking in the detector node, its own process over real DDS: ids that stay with their objects.

The synthetic camera's ground truth carries each object's identity (Detection2D.id); the
detector's answers, with ``tracking`` on, are matched to it frame by frame.
"""

from collections import defaultdict

from rclpy.node import Node

from detr_ros.runtime.detections import iou_matrix
from node_testing import boxes_of, detections_by_stamp, play_synthetic_camera, start_detector


def test_track_ids_stay_with_their_objects_across_frames(ros_env, ros_context, tmp_path):
    frames = 20
    detector = start_detector(ros_env, tmp_path, {"image_topics": ["cam/image"], "tracking": True})
    probe = Node("tracking_probe", context=ros_context)
    truth, found = detections_by_stamp(probe, "cam/ground_truth"), detections_by_stamp(probe, "cam/detections")
    try:
        play_synthetic_camera(ros_env, ros_context, tmp_path, probe,
                              {"width": 320, "height": 320, "rate": 3.0, "frames": frames, "seed": 7,
                               "wait_for_subscribers": 1}, lambda: truth and set(truth) <= set(found), 90.0)
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()

    answered = sorted(set(found) & set(truth))
    assert len(answered) >= frames * 3 // 4, f"{len(answered)} of {frames} frames answered:\n{detector.output}"
    ids_of_object = defaultdict(list)
    for stamp in answered:
        truth_boxes, _, _ = boxes_of(truth[stamp])
        boxes, _, _ = boxes_of(found[stamp])
        track_ids = [d.id for d in found[stamp].detections]
        iou = iou_matrix(truth_boxes, boxes)
        if not iou.size:
            continue
        for row, column in enumerate(iou.argmax(axis=1)):
            if iou[row, column] >= 0.5:
                ids_of_object[truth[stamp].detections[row].id].append(track_ids[column])
    assert len(ids_of_object) >= 3
    for object_id, ids in ids_of_object.items():
        confirmed = [i for i in ids if i]
        # At most an object's first frame goes without an id (its track may not have started yet).
        assert len(confirmed) >= len(ids) - 1, (object_id, ids)
        assert len(set(confirmed)) == 1, f"object {object_id} changed id: {ids}"
    owners = [set(i for i in ids if i) for ids in ids_of_object.values()]
    assert len(set.union(*owners)) == len(owners), "two objects shared an id"
