"""COCO results and box mAP with pycocotools, shared by ``detr-ros eval``/training, detect and the demo.

numpy and pycocotools only (no torch), so that the demo's scoring runs wherever the node runs.
"""

import contextlib
import io

import numpy as np

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_results(image_id, boxes, scores, class_ids, category_ids):
    """COCO results entries of one image's detections, the one writer of them.

    boxes: [n, 4] xyxy in source pixels; scores: [n]; class_ids: [n] training-class indices (numpy arrays,
    CPU tensors or lists); category_ids: the dataset category id of each training class. A class id
    without an entry there is written as itself: the identity mapping the runtime also assumes for a
    model that carries no category ids.
    Returns [{"image_id", "category_id", "bbox": [x, y, w, h] pixels to 0.01, "score" to 1e-5}].
    """
    category_ids = list(category_ids)
    results = []
    for (x0, y0, x1, y1), score, class_id in zip(np.asarray(boxes, np.float64).reshape(-1, 4).tolist(),
                                                 np.asarray(scores, np.float64).reshape(-1).tolist(),
                                                 np.asarray(class_ids, np.int64).reshape(-1).tolist()):
        category = category_ids[class_id] if 0 <= class_id < len(category_ids) else class_id
        results.append({"image_id": int(image_id), "category_id": int(category),
                        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                        "score": round(score, 5)})
    return results


def load_coco_ground_truth(annotation_file):
    """pycocotools COCO object for an annotations file (its loading chatter silenced)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_file))


def coco_evaluate(coco_gt, detections):
    """COCO box mAP of ``detections`` against ``coco_gt`` (a pycocotools COCO object).

    detections: list of {"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}
    Returns {"AP", "AP50", "AP75", "APs", "APm", "APl", "per_class": [{"category_id", "name",
    "AP", "AP50"}], "num_images", "num_detections", "summary": pycocotools' printed table}.
    Values that pycocotools leaves undefined (no ground truth of that kind) are -1.
    """
    from pycocotools.cocoeval import COCOeval

    categories = coco_gt.loadCats(coco_gt.getCatIds())
    result = {"num_images": len(coco_gt.getImgIds()), "num_detections": len(detections)}
    if not detections:
        result.update({key: 0.0 for key in SUMMARY_KEYS})
        result["per_class"] = [{"category_id": c["id"], "name": c["name"], "AP": 0.0, "AP50": 0.0} for c in categories]
        result["summary"] = "no detections"
        return result
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    result.update({key: float(value) for key, value in zip(SUMMARY_KEYS, evaluator.stats[:6])})
    # precision: [IoU thresholds, recall points, categories, area ranges, max detections]
    precision = evaluator.eval["precision"]
    per_class = [{
        "category_id": int(category_id),
        "name": coco_gt.cats[category_id]["name"],
        "AP": _mean_defined(precision[:, :, k, 0, -1]),
        "AP50": _mean_defined(precision[0, :, k, 0, -1]),
    } for k, category_id in enumerate(evaluator.params.catIds)]
    result["per_class"] = per_class
    result["summary"] = "\n".join(line for line in output.getvalue().splitlines() if "Average" in line)
    return result


def _mean_defined(values):
    """Mean of the precision values pycocotools defines (it marks the others -1); -1 when none are."""
    values = values[values > -1]
    return float(values.mean()) if values.size else -1.0


def ground_truth_from_dict(dataset):
    """pycocotools COCO object for an in-memory COCO dataset {"images", "annotations", "categories"}."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
    return coco_gt
