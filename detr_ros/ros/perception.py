"""What the detector node adds to 2D boxes, per camera: track ids (optional, ``tracking``).

Plain Python around the runtime's Tracker, so the node keeps to a few hook lines: the node asks
``detection_threshold`` what to run the model at, and ``track`` which detections to publish
with which ids.
"""

from detr_ros.runtime.tracking import Tracker, TrackerSettings


def tracker_settings(values):
    """TrackerSettings from the node's ``tracking.*`` parameter values (name -> value)."""
    return TrackerSettings(low_score=values["tracking_low_score"], lost_timeout_s=values["tracking_lost_timeout_s"],
                           reset_gap_s=values["tracking_reset_gap_s"])


class Perception:
    """Per-camera trackers when ``tracking`` is on; otherwise detections pass through unchanged."""

    def __init__(self, values, num_cameras):
        settings = tracker_settings(values) if values["tracking"] else None
        self._trackers = [Tracker(settings) for _ in range(num_cameras)] if settings else None

    def detection_threshold(self, score_threshold):
        """The score the model must run down to: the tracker's weak detections continue tracks."""
        if self._trackers is None:
            return score_threshold
        return min(score_threshold, self._trackers[0].settings.low_score)

    def track(self, camera, detections, stamp_ns, score_threshold):
        """(Detections to publish, their ids [k] as strings or None for the writer's default)."""
        if self._trackers is None:
            return detections, None
        published, track_ids = self._trackers[camera].track(detections, stamp_ns, score_threshold)
        return published, [str(i) if i else "" for i in track_ids.tolist()]
