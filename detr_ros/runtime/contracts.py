"""The two ONNX signatures the runtime understands, and how to read each one's outputs.

official: the signature shared by the official RT-DETR, RT-DETRv2, D-FINE and DEIM exports and
  by ``detr-ros export``: inputs images float32 [N,3,H,W] and orig_target_sizes int64 [N,2] = (W,H);
  outputs labels int64 [N,K], boxes float32 [N,K,4] xyxy in pixels of orig_target_sizes, scores [N,K].
ultralytics: the Ultralytics RT-DETR export: one input [N,3,H,W], one output [N,Q,4+C] holding
  normalised cxcywh boxes then per-class scores (already sigmoid).
"""

from dataclasses import dataclass

import numpy as np

from detr_ros.errors import ModelFileError

OFFICIAL_INPUTS = ("images", "orig_target_sizes")
OFFICIAL_OUTPUTS = ("labels", "boxes", "scores")
EXPECTED = (
    "expected the official RT-DETR signature (inputs images float32 [N,3,H,W], orig_target_sizes int64 [N,2]; "
    "outputs labels int64 [N,K], boxes float32 [N,K,4], scores float32 [N,K]) or the Ultralytics RT-DETR "
    "signature (one input float32 [N,3,H,W], one output float32 [N,300,4+C])"
)


def describe(args):
    """'name type [d0,d1,...]' for onnxruntime NodeArgs, for error messages."""
    return ", ".join(f"{a.name} {a.type.replace('tensor(', '').rstrip(')')} "
                     f"[{','.join(str(d) if isinstance(d, int) else 'N' if i == 0 else '?' for i, d in enumerate(a.shape))}]"
                     for a in args)


def static_dim(value):
    return value if isinstance(value, int) and value > 0 else None


@dataclass(frozen=True)
class Contract:
    """A recognised signature.

    kind: "official" | "ultralytics"; image_input: name of the image input;
    batch: fixed batch size of the graph or None when dynamic;
    input_size: (H, W) declared by the graph, or None when dynamic;
    num_classes: C when the graph declares it (Ultralytics), else None.
    """

    kind: str
    image_input: str
    batch: object
    input_size: object
    num_classes: object

    def feeds(self, blob, canvas_sizes):
        """Inputs for session.run: blob [N,3,H,W] float32; canvas_sizes [N,2] int64 (W,H) for official graphs."""
        if self.kind == "official":
            return {"images": blob, "orig_target_sizes": canvas_sizes}
        return {self.image_input: blob}

    def decode(self, outputs, canvas_size):
        """Raw outputs -> (boxes [N,K,4] xyxy in orig_target_sizes / canvas pixels, scores [N,K], labels [N,K]).

        canvas_size: (H, W) of the network input, for the normalised Ultralytics boxes.
        """
        if self.kind == "official":
            labels, boxes, scores = outputs
            return boxes.astype(np.float32, copy=False), scores, labels.astype(np.int64, copy=False)
        (predictions,) = outputs
        height, width = canvas_size
        cx, cy, w, h = (predictions[..., i] for i in range(4))
        boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
        class_scores = predictions[..., 4:]
        labels = class_scores.argmax(-1)
        scores = np.take_along_axis(class_scores, labels[..., None], -1)[..., 0]
        return boxes.astype(np.float32, copy=False), scores, labels

    def output_names(self, outputs):
        if self.kind == "official":
            return list(OFFICIAL_OUTPUTS)
        return [outputs[0].name]


def recognise(inputs, outputs, path, metadata_props):
    """Match a graph's NodeArgs against the known signatures; ModelFileError naming both otherwise."""
    found = f"found inputs {describe(inputs)}; outputs {describe(outputs)}"
    input_names = {a.name: a for a in inputs}
    output_names = {a.name for a in outputs}
    if set(input_names) == set(OFFICIAL_INPUTS) and output_names == set(OFFICIAL_OUTPUTS):
        images = input_names["images"]
        ranks_ok = len(images.shape) == 4 and len(input_names["orig_target_sizes"].shape) == 2
        if ranks_ok and static_dim(images.shape[1]) in (3, None):
            return Contract("official", "images", static_dim(images.shape[0]), _declared_size(images), None)
    elif len(inputs) == 1 and len(outputs) == 1 and len(inputs[0].shape) == 4 and len(outputs[0].shape) == 3:
        input_size = _declared_size(inputs[0])
        width = static_dim(outputs[0].shape[2])
        yolo = "yolo" in metadata_props.get("description", "").lower() or (
            input_size is not None and width == yolo_anchor_count(*input_size))
        if yolo:
            raise ModelFileError(f"{path}: a YOLO-style output [N,4+C,anchors] that needs NMS; {found}; {EXPECTED}")
        if width is None or width >= 5:
            return Contract("ultralytics", inputs[0].name, static_dim(inputs[0].shape[0]), input_size,
                            None if width is None else width - 4)
    raise ModelFileError(f"{path}: unknown model signature: {found}; {EXPECTED}")


def yolo_anchor_count(height, width):
    """Cells of the stride 8, 16 and 32 maps: the last dimension of a YOLOv8-style [N, 4+C, anchors] output."""
    return sum((height // stride) * (width // stride) for stride in (8, 16, 32))


def _declared_size(image_input):
    height, width = (static_dim(d) for d in image_input.shape[2:])
    return (height, width) if height and width else None
