"""``detr-ros detect --tracking``: objects in a video and a rosbag keep their track ids from frame to frame."""

import numpy as np
from rosbags.rosbag2.writer import StoragePlugin

from detr_ros.ros.detector_parameters import default_model_path
from detr_ros.runtime.detections import iou_matrix
from detr_ros.synthetic import SceneVideo
from test_detect import detect, read_outputs, write_bag, write_video


def test_video_and_bag_objects_keep_one_track_id_each(tmp_path):
    scenes = SceneVideo(320, 320, seed=5)
    frames = [scenes.frame(i) for i in range(16)]
    bag = write_bag(tmp_path / "scenes", [bgr for bgr, _ in frames], StoragePlugin.MCAP, compressed_topic=False)
    video = write_video(tmp_path / "scenes.mp4", [bgr for bgr, _ in frames])
    out = tmp_path / "out"
    assert detect(default_model_path(), bag, video, "--out", out, "--tracking") == 0
    images, by_image = read_outputs(out)
    ids = {}  # (stream, truth id) -> track ids over the frames
    for image in images:
        truth = frames[image["frame"]][1]
        results = by_image[image["id"]]
        assert all("track_id" in r for r in results)
        if not truth or not results:
            continue
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in results)])
        iou = iou_matrix([a.box for a in truth], boxes)
        for row, column in enumerate(iou.argmax(axis=1)):
            if iou[row, column] >= 0.5:
                ids.setdefault((image["file_name"], truth[row].track_id), []).append(results[column]["track_id"])
    assert {stream for stream, _ in ids} == {f"{bag}:/cam/image_raw", str(video)}
    for key, track_ids in ids.items():
        # No id (0) at most on an object's first frame; one id for the rest of the clip.
        assert track_ids.count(0) <= 1 and len(set(track_ids) - {0}) == 1, (key, track_ids)
