"""A detr_ros checkpoint in PyTorch behind the runtime's detection path.

The model and its post-processing are what ``detr-ros export`` puts in the ONNX graph (the
official signature), and the pre-processing, box mapping and selection are the runtime's own
(DetectionPipeline), fed with the metadata the export writes: only the model call differs, so
the detections are those of the checkpoint's export.
"""

import numpy as np
import torch

from detr_ros.export.onnx_export import deployed_detector, export_metadata
from detr_ros.runtime import formats
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD
from detr_ros.runtime.pipeline import DetectionPipeline, check_selection


class CheckpointDetector(DetectionPipeline):
    """``detect``/``detect_batch`` of a checkpoint file, as the runtime Detector has them for its export.

    model: the model rewritten for inference (``DeployedDetector.model``); config: its ModelConfig.
    score_threshold, classes, max_detections, duplicate_iou: defaults for each call (see detect_batch).
    """

    def __init__(self, path, *, score_threshold=DEFAULT_SCORE_THRESHOLD, classes=None, max_detections=100,
                 duplicate_iou=DEFAULT_DUPLICATE_IOU):
        selection = check_selection(score_threshold, classes, max_detections, duplicate_iou)
        self.deployed, self.config, checkpoint = deployed_detector(path)
        self.model = self.deployed.model
        input_size = tuple(self.config.input_size)
        metadata = export_metadata(self.config, checkpoint, path, input_size, "stretch")
        super().__init__(formats.official(input_size), metadata, selection)

    def _run_model(self, feeds):
        with torch.no_grad():
            outputs = self.deployed(torch.from_numpy(feeds["images"]), torch.from_numpy(feeds["orig_target_sizes"]))
        return [output.numpy() for output in outputs]

    def network_input(self, image, color_order="bgr"):
        """(images [1, 3, H, W] float tensor as the model takes it, the image's runtime Placement)."""
        blob = np.zeros((1, 3, *self.input_size), np.float32)
        placement = self._preprocessor.fill(blob[0], image, color_order, self._preprocessor.new_canvases())
        return torch.from_numpy(blob), placement
