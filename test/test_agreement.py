"""detr_ros.export.agreement: detections of two runs matched as sets, through dense duplicates and a top-K cut."""

import numpy as np

from detr_ros.export.agreement import agreement

SIZE = [(100, 100)]


def run(rows):
    """(labels [K], boxes [K, 4], scores [K]) of rows (label, x0, y0, x1, y1, score)."""
    rows = np.array(rows, np.float64)
    return rows[:, 0].astype(np.int64), rows[:, 1:5].astype(np.float32), rows[:, 5].astype(np.float32)


def test_a_detection_is_matched_to_its_counterpart_among_duplicates_that_score_alike():
    # three overlapping duplicates of one object, the reference's 0.900 one lies 10 px left of its counterpart's twin
    reference = run([(0, 10, 10, 50, 50, 0.900), (0, 20, 10, 60, 50, 0.901), (0, 15, 10, 55, 50, 0.899)])
    other = run([(0, 20, 10, 60, 50, 0.900), (0, 10, 10, 50, 50, 0.901), (0, 15, 10, 55, 50, 0.899)])
    found = agreement([reference], [other], SIZE)
    assert found.pairs == 3 and found.unmatched == [] and found.box_max == 0.0


def test_only_a_detection_at_the_other_runs_top_k_cut_may_go_unmatched():
    # both runs output their top 3; the matched two differ in score by up to 0.001
    kept = [(1, 0, 0, 10, 10, 0.950), (1, 20, 0, 30, 10, 0.930)]
    kept_other = [(1, 0, 0, 10, 10, 0.951), (1, 20, 0, 30, 10, 0.929)]
    # the third differs, each within 0.001 of the other run's cut
    at_cut = agreement([run(kept + [(1, 40, 0, 50, 10, 0.9105)])], [run(kept_other + [(2, 60, 0, 70, 10, 0.9100)])],
                       SIZE)
    assert at_cut.unmatched == [] and at_cut.at_cut == 2
    # a detection well above the other run's lowest score has no such excuse
    beyond = agreement([run(kept + [(1, 40, 0, 50, 10, 0.94)])], [run(kept_other + [(2, 60, 0, 70, 10, 0.91)])], SIZE)
    assert len(beyond.unmatched) == 1 and "of the reference has no counterpart" in beyond.unmatched[0]
    assert beyond.at_cut == 1
