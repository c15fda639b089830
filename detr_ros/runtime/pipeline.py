"""The detection path every model shares: camera images -> network input -> model call -> Detections.

Each call pre-processes into buffers taken from a pool (allocated once per batch size, so
concurrent callers never share one), hands them to the model, decodes its outputs by the
format's rules and filters them with the call's threshold, class allow-list and maximum
count. A subclass supplies only the model call: the runtime's Detector runs an ONNX session,
the offline tools run a PyTorch checkpoint, so both prepare and select in exactly one way.
"""

import threading
import time

import numpy as np

from detr_ros.runtime.detections import check_fraction, check_positive_integer, select
from detr_ros.runtime.preprocess import Placement, Preprocessor


class _Workspace:
    """Input buffers for one batch size: blob [B,3,H,W] float32, sizes [B,2] int64, uint8 canvases."""

    def __init__(self, batch, preprocessor):
        height, width = preprocessor.input_size
        self.blob = np.zeros((batch, 3, height, width), np.float32)
        self.sizes = np.empty((batch, 2), np.int64)
        self.canvases = preprocessor.new_canvases()


def check_selection(score_threshold, classes, max_detections, duplicate_iou):
    """The selection settings checked: (score_threshold, classes as int64 array or None, max_detections,
    duplicate_iou); ConfigError naming the first bad one."""
    check_positive_integer("max_detections", max_detections)
    if classes is not None:
        classes = np.asarray(list(classes), np.int64)
    return (check_fraction("score_threshold", score_threshold), classes, max_detections,
            check_fraction("duplicate_iou", duplicate_iou))


class DetectionPipeline:
    """Images in, Detections out, around a model call that subclasses provide (``_run_model``).

    contract: the model's format (formats.Recognised), which says how to feed it and read its outputs.
    metadata: runtime.metadata.ModelMetadata: input size, resize mode, colour order, scale, normalisation,
    class names.
    selection: check_selection(score_threshold, classes, max_detections, duplicate_iou), the defaults
    of each call (see detect_batch).
    """

    def __init__(self, contract, metadata, selection):
        self._contract = contract
        self.metadata = metadata
        self.score_threshold, self.classes, self.max_detections, self.duplicate_iou = selection
        self._preprocessor = Preprocessor(metadata.input_size, metadata.resize_mode, metadata.color_order,
                                          metadata.scale_factor, metadata.normalization)
        self._pool_lock = threading.Lock()
        self._free_workspaces = {}

    def _run_model(self, feeds):
        """The model's raw outputs (a list of numpy arrays, in the contract's output order) for feeds
        (the contract's input name -> array)."""
        raise NotImplementedError

    @property
    def class_names(self):
        return self.metadata.class_names

    @property
    def category_ids(self):
        return self.metadata.category_ids

    @property
    def input_size(self):
        """(H, W) of the network input."""
        return self.metadata.input_size

    @property
    def signature(self):
        """The model's format: a formats.FORMATS name."""
        return self._contract.kind

    def class_name(self, class_id):
        names = self.metadata.class_names
        return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id}"

    def detect(self, image, color_order="bgr", **settings):
        """Detections of one image: uint8 [H,W,3] ("bgr"/"rgb"), [H,W,4] ("bgra"/"rgba") or [H,W] ("gray").

        settings: score_threshold, classes, max_detections, duplicate_iou, timings (see detect_batch).
        """
        return self.detect_batch([image], color_order, **settings)[0]

    def detect_batch(self, images, color_orders="bgr", *, score_threshold=None, classes=None, max_detections=None,
                     duplicate_iou=None, timings=None):
        """Detections of each image, run through the model in batches.

        color_orders: one order for all images or one per image.
        score_threshold, classes (allowed class ids), max_detections, duplicate_iou (same-class boxes
        overlapping more than this count once; 1.0 keeps all): None takes the default of this detector.
        timings: optional dict; seconds spent are added under preprocess_s, inference_s, postprocess_s.
        """
        images = list(images)
        if isinstance(color_orders, str):
            color_orders = [color_orders] * len(images)
        if len(color_orders) != len(images):
            raise ValueError(f"{len(color_orders)} color orders for {len(images)} images")
        selection = check_selection(
            self.score_threshold if score_threshold is None else score_threshold,
            self.classes if classes is None else classes,
            self.max_detections if max_detections is None else max_detections,
            self.duplicate_iou if duplicate_iou is None else duplicate_iou)
        chunk = self._contract.batch or max(len(images), 1)
        results = []
        for start in range(0, len(images), chunk):
            results += self._run_chunk(images[start:start + chunk], color_orders[start:start + chunk],
                                       chunk, selection, timings)
        return results

    def _run_chunk(self, images, color_orders, batch, selection, timings):
        started = time.perf_counter()
        workspace = self._acquire(batch)
        try:
            placements = []
            height, width = self.metadata.input_size
            for index, (image, order) in enumerate(zip(images, color_orders)):
                placement = self._preprocessor.fill(workspace.blob[index], image, order, workspace.canvases)
                if self._contract.format.boxes_in_target_sizes and self.metadata.resize_mode == "stretch":
                    # The graph scales its boxes to orig_target_sizes itself: hand it the source size.
                    workspace.sizes[index] = (placement.width, placement.height)
                    placement = Placement.identity(placement.height, placement.width)
                else:
                    workspace.sizes[index] = (width, height)
                placements.append(placement)
            workspace.blob[len(images):] = 0  # a fixed-batch graph given fewer images
            workspace.sizes[len(images):] = (width, height)
            preprocessed = time.perf_counter()
            outputs = self._run_model(self._contract.feeds(workspace.blob, workspace.sizes))
        finally:
            self._release(batch, workspace)
        inferred = time.perf_counter()
        boxes, scores, labels = self._contract.decode(outputs, self.metadata.input_size)
        threshold, allowed, limit, duplicate_iou = selection
        results = [select(boxes[i], scores[i], labels[i], placements[i], score_threshold=threshold,
                          classes=allowed, max_detections=limit, duplicate_iou=duplicate_iou)
                   for i in range(len(images))]
        if timings is not None:
            finished = time.perf_counter()
            for key, seconds in (("preprocess_s", preprocessed - started), ("inference_s", inferred - preprocessed),
                                 ("postprocess_s", finished - inferred)):
                timings[key] = timings.get(key, 0.0) + seconds
        return results

    def _acquire(self, batch):
        with self._pool_lock:
            free = self._free_workspaces.setdefault(batch, [])
            if free:
                return free.pop()
        return _Workspace(batch, self._preprocessor)

    def _release(self, batch, workspace):
        with self._pool_lock:
            self._free_workspaces[batch].append(workspace)
