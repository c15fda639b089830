"""The model formats the runtime knows: how each is recognised, prepared for and decoded.

- ``official``: images [N,3,H,W] and orig_target_sizes int64 [N,2] = (W,H) in; labels [N,K], boxes
  [N,K,4] xyxy in pixels of orig_target_sizes and scores [N,K] out, used as they are. Stretch, RGB, 0..1.
- ``ultralytics_rtdetr``: one image in; [N,Q,4+C] out: normalised cxcywh, then C class scores; each
  query's best class. Stretch, RGB, 0..1.
- ``ultralytics_rtdetr_topk``: one image in; [N,K,6] out: normalised cxcywh, score, class. Stretch,
  RGB, 0..1.
- ``yolo_end2end``: one image in; [N,K,6] out: xyxy in input pixels, score, class. Letterbox, RGB, 0..1.
- ``rfdetr``: one image in; dets [N,Q,4] normalised cxcywh and labels [N,Q,C] logits out; sigmoid,
  then the best Q of the Q x C query/class pairs. Stretch, RGB, ImageNet mean/std.

Who writes which: ``official`` is the signature of the official RT-DETR, RT-DETRv2, D-FINE, DEIM,
DEIMv2 and RT-DETRv4 exports and of ``detr-ros export`` (DEIMv2's S to X models expect ImageNet
mean/std, which nothing in their file says: ``normalization="imagenet"``). Ultralytics up to 8.3
exports RT-DETR as ``ultralytics_rtdetr``; from 8.4 on as ``ultralytics_rtdetr_topk``, the top-K in
the graph. ``yolo_end2end`` is YOLO26 (and YOLOv10) exported NMS-free. ``rfdetr`` is RF-DETR and
LW-DETR; their last class slot is "no object", except in a 91-slot graph, whose slots are the COCO
category ids.

Recognition never guesses. The shapes decide where only one format fits them; where several do (an
Ultralytics [N,300,6] output is an 8.3 RT-DETR with two classes, an 8.4 RT-DETR or an end-to-end
YOLO), the file's metadata decides: Ultralytics writes ``version``, ``names``, ``task`` and
``description`` and, from 8.4 on, ``head`` and ``end2end``. Ultralytics layouts are accepted only on
that metadata, since a bare [N,Q,K] output can be anything (a reshaped image). A file that nothing
decides is refused, naming the formats it could be and the ``model_format`` option that picks one.
"""

from dataclasses import dataclass

import numpy as np

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.runtime.metadata import KEY_RESIZE_MODE, RESIZE_MODES, ultralytics_names
from detr_ros.runtime.preprocess import NORMALIZATIONS

OFFICIAL_INPUTS = ("images", "orig_target_sizes")
OFFICIAL_OUTPUTS = ("labels", "boxes", "scores")
RFDETR_OUTPUTS = ("dets", "labels")
# An RF-DETR head with 91 slots is taken for a COCO head: slot i is COCO category id i, and there is
# no "no object" slot (RF-DETR's own decoder is told so for COCO checkpoints). A head trained on 90
# classes of one's own would have 91 slots too; its last class would then be read as a class.
COCO_CATEGORY_SLOTS = 91
# From this release on Ultralytics exports RT-DETR with the top-K inside the graph.
ULTRALYTICS_TOPK_RELEASE = (8, 4)


def describe(args):
    """'name type [d0,d1,...]' for onnxruntime NodeArgs, for error messages."""
    return ", ".join(f"{a.name} {a.type.replace('tensor(', '').rstrip(')')} "
                     f"[{','.join(str(d) if isinstance(d, int) else 'N' if i == 0 else '?' for i, d in enumerate(a.shape))}]"
                     for a in args)


def static_dim(value):
    return value if isinstance(value, int) and value > 0 else None


def declared_size(image_input):
    """(H, W) of a [N,3,H,W] input when both are static, else None."""
    height, width = (static_dim(d) for d in image_input.shape[2:])
    return (height, width) if height and width else None


def cxcywh_to_pixels(boxes, canvas_size):
    """boxes [..., 4] normalised cxcywh -> [..., 4] float32 xyxy in pixels of canvas_size = (H, W)."""
    height, width = canvas_size
    cx, cy, w, h = (boxes[..., i] for i in range(4))
    return np.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                     (cx + w / 2) * width, (cy + h / 2) * height], -1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class UltralyticsFile:
    """What Ultralytics' metadata says about the model, or None for files without it.

    release: (major, minor) of the Ultralytics version that exported it; family: "rtdetr", "yolo" or
    None where the metadata does not say; end2end: True/False from 8.4's ``end2end``, else None.
    """

    release: tuple
    family: object
    end2end: object
    names: list
    task: str

    @classmethod
    def read(cls, props):
        if "version" not in props or "names" not in props:
            return None
        try:
            release = tuple(int(v) for v in props["version"].split(".")[:2])
        except ValueError:
            return None
        if "head" in props:  # 8.4 on: the head's class name
            family = "rtdetr" if props["head"] == "RTDETRDecoder" else "yolo"
        else:  # before 8.4 only the description names the model ("Ultralytics rtdetr-l model ...")
            description = props.get("description", "").lower().replace("-", "")
            family = "rtdetr" if "rtdetr" in description else "yolo" if "yolo" in description else None
        end2end = {"True": True, "False": False}.get(props.get("end2end"))
        return cls(release, family, end2end, ultralytics_names(props), props.get("task", "detect"))


class Format:
    """One known format. Subclasses say how it is recognised (misfit, verdict), fed and decoded.

    name: the model_format value that names it; layout: its inputs and outputs, for messages.
    resize_mode: "stretch" | "letterbox"; normalization: "none" | "imagenet"; both defaults that a
    file's detr_ros metadata or the Detector's options override.
    needs_metadata: accepted only where the file's metadata confirms it (or model_format names it).
    boxes_in_target_sizes: the graph scales its boxes to the orig_target_sizes it is fed.
    """

    name = ""
    layout = ""
    resize_mode = "stretch"
    normalization = "none"
    needs_metadata = False
    boxes_in_target_sizes = False

    def misfit(self, inputs, outputs):
        """None when the graph's inputs and outputs have this format's shape, else why not."""
        raise NotImplementedError

    def verdict(self, props):
        """(True | False | None, reason): whether the file's metadata says it is this format."""
        return None, ""

    def output_names(self, outputs):
        return [outputs[0].name]

    def image_input(self, inputs):
        return inputs[0]

    def num_classes(self, outputs, props):
        """Classes the graph scores, where its shape or metadata says, else None."""
        return None

    def category_slots(self, num_classes):
        """Whether the graph's class index is itself a COCO category id."""
        return False

    def feeds(self, image_input, blob, canvas_sizes):
        """Inputs for session.run: blob [N,3,H,W] float32; canvas_sizes [N,2] int64 (W,H)."""
        return {image_input: blob}

    def decode(self, outputs, canvas_size):
        """Raw outputs -> (boxes [N,K,4] xyxy in canvas or orig_target_sizes pixels, scores [N,K], labels [N,K]).

        canvas_size: (H, W) of the network input.
        """
        raise NotImplementedError


class Official(Format):
    name = "official"
    layout = ("inputs images float32 [N,3,H,W], orig_target_sizes int64 [N,2]; "
              "outputs labels int64 [N,K], boxes float32 [N,K,4], scores float32 [N,K]")
    boxes_in_target_sizes = True

    def misfit(self, inputs, outputs):
        by_name = {a.name: a for a in inputs}
        if set(by_name) != set(OFFICIAL_INPUTS) or {a.name for a in outputs} != set(OFFICIAL_OUTPUTS):
            return "its inputs and outputs are not named as the official signature's"
        images = by_name["images"]
        if len(images.shape) != 4 or len(by_name["orig_target_sizes"].shape) != 2 or \
                static_dim(images.shape[1]) not in (3, None):
            return "images is not [N,3,H,W] or orig_target_sizes not [N,2]"
        return None

    def image_input(self, inputs):
        return next(a for a in inputs if a.name == "images")

    def output_names(self, outputs):
        return list(OFFICIAL_OUTPUTS)

    def feeds(self, image_input, blob, canvas_sizes):
        return {"images": blob, "orig_target_sizes": canvas_sizes}

    def decode(self, outputs, canvas_size):
        labels, boxes, scores = outputs
        return boxes.astype(np.float32, copy=False), scores, labels.astype(np.int64, copy=False)


class SingleOutput(Format):
    """The Ultralytics layouts: one image input [N,3,H,W], one output [N,K,width]."""

    needs_metadata = True
    width = None  # the output's last dimension, where the layout fixes it

    def misfit(self, inputs, outputs):
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 3:
            return "it does not have one image input [N,3,H,W] and one output [N,K,D]"
        width = static_dim(outputs[0].shape[2])
        if self.width is not None and width not in (self.width, None):
            return f"its output's last dimension is {width}, not {self.width}"
        return None

    def verdict(self, props):
        ultralytics = UltralyticsFile.read(props)
        if ultralytics is None:
            return None, "no Ultralytics metadata (version, names) says what it is"
        if ultralytics.task != "detect":
            return False, f"Ultralytics metadata says task {ultralytics.task!r}, not 'detect'"
        return self.judge(ultralytics)

    def judge(self, ultralytics):
        raise NotImplementedError

    @staticmethod
    def yolo(ultralytics):
        """The verdict of an RT-DETR layout on a file whose metadata says YOLO."""
        if ultralytics.end2end:
            return False, "Ultralytics metadata says it is a YOLO model"
        return False, ("Ultralytics metadata says it is a YOLO model; a YOLO model not exported end-to-end "
                       "needs NMS: export it NMS-free (Ultralytics: nms=False)")

    def num_classes(self, outputs, props):
        ultralytics = UltralyticsFile.read(props)
        return len(ultralytics.names) if ultralytics is not None and ultralytics.names else None


class UltralyticsRtdetr(SingleOutput):
    name = "ultralytics_rtdetr"
    layout = "one input float32 [N,3,H,W]; one output float32 [N,Q,4+C] (Ultralytics RT-DETR up to 8.3)"

    def misfit(self, inputs, outputs):
        problem = super().misfit(inputs, outputs)
        width = None if problem else static_dim(outputs[0].shape[2])
        if width is not None and width < 5:
            return "its output's last dimension leaves no class scores"
        return problem

    def judge(self, ultralytics):
        if ultralytics.family == "yolo":
            return self.yolo(ultralytics)
        if ultralytics.release >= ULTRALYTICS_TOPK_RELEASE:
            return False, (f"Ultralytics {'.'.join(map(str, ultralytics.release))} exports RT-DETR with the top-K "
                           "in the graph")
        if ultralytics.family is None:
            return None, "its Ultralytics metadata does not say whether it is RT-DETR or YOLO"
        return True, ""

    def num_classes(self, outputs, props):
        width = static_dim(outputs[0].shape[2])
        return width - 4 if width is not None else super().num_classes(outputs, props)

    def decode(self, outputs, canvas_size):
        (predictions,) = outputs
        class_scores = predictions[..., 4:]
        labels = class_scores.argmax(-1)
        scores = np.take_along_axis(class_scores, labels[..., None], -1)[..., 0]
        return cxcywh_to_pixels(predictions[..., :4], canvas_size), scores, labels


class SixColumns(SingleOutput):
    """The NMS-free Ultralytics layouts: [N,K,6] = four box columns, score, class."""

    width = 6

    def pixels(self, boxes, canvas_size):
        """boxes [N,K,4] as the graph gives them -> [N,K,4] float32 xyxy canvas pixels."""
        raise NotImplementedError

    def decode(self, outputs, canvas_size):
        (predictions,) = outputs
        return (self.pixels(predictions[..., :4], canvas_size), predictions[..., 4],
                np.rint(predictions[..., 5]).astype(np.int64))


class UltralyticsRtdetrTopk(SixColumns):
    name = "ultralytics_rtdetr_topk"
    layout = ("one input float32 [N,3,H,W]; one output float32 [N,K,6] = cx,cy,w,h,score,class "
              "(Ultralytics RT-DETR 8.4 on)")

    def judge(self, ultralytics):
        if ultralytics.family == "yolo":
            return self.yolo(ultralytics)
        if ultralytics.release < ULTRALYTICS_TOPK_RELEASE:
            return False, f"Ultralytics {'.'.join(map(str, ultralytics.release))} exports RT-DETR as [N,Q,4+C]"
        return True, ""

    def pixels(self, boxes, canvas_size):
        return cxcywh_to_pixels(boxes, canvas_size)


class YoloEnd2End(SixColumns):
    name = "yolo_end2end"
    layout = ("one input float32 [N,3,H,W]; one output float32 [N,K,6] = x1,y1,x2,y2,score,class in input "
              "pixels (YOLO26, YOLOv10)")
    resize_mode = "letterbox"

    def judge(self, ultralytics):
        if ultralytics.family == "rtdetr":
            return False, "Ultralytics metadata says it is an RT-DETR model"
        if ultralytics.end2end is False:
            return self.yolo(ultralytics)
        if ultralytics.family is None:
            return None, "its Ultralytics metadata does not say whether it is RT-DETR or YOLO"
        return True, ""

    def pixels(self, boxes, canvas_size):
        return boxes.astype(np.float32, copy=False)


class Rfdetr(Format):
    name = "rfdetr"
    layout = ("one input float32 [N,3,H,W]; outputs dets float32 [N,Q,4] (normalised cxcywh), "
              "labels float32 [N,Q,C] (logits; RF-DETR, LW-DETR)")
    normalization = "imagenet"

    def misfit(self, inputs, outputs):
        by_name = {a.name: a for a in outputs}
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or set(by_name) != set(RFDETR_OUTPUTS):
            return "it does not have one image input and the outputs dets, labels"
        if len(by_name["dets"].shape) != 3 or len(by_name["labels"].shape) != 3 or \
                static_dim(by_name["dets"].shape[2]) not in (4, None):
            return "dets is not [N,Q,4] or labels not [N,Q,C]"
        return None

    def output_names(self, outputs):
        return list(RFDETR_OUTPUTS)

    def num_classes(self, outputs, props):
        slots = static_dim(next(a for a in outputs if a.name == "labels").shape[2])
        if slots is None:
            return None
        return slots if slots == COCO_CATEGORY_SLOTS else slots - 1

    def category_slots(self, num_classes):
        return num_classes == COCO_CATEGORY_SLOTS

    def decode(self, outputs, canvas_size):
        dets, logits = outputs
        batch, queries, slots = logits.shape
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -88.0, 88.0)))
        if slots != COCO_CATEGORY_SLOTS:
            scores = scores[..., :-1]  # the "no object" slot
        classes = scores.shape[2]
        flat = scores.reshape(batch, queries * classes)
        # The best Q query/class pairs, as RF-DETR selects them: a query may name several classes.
        # A stable sort of the negated scores keeps equal scores in pair order.
        pairs = np.argsort(-flat, axis=1, kind="stable")[:, :queries]
        query = pairs // classes
        boxes = np.take_along_axis(dets, query[..., None], 1)
        return (cxcywh_to_pixels(boxes, canvas_size), np.take_along_axis(flat, pairs, 1),
                (pairs % classes).astype(np.int64))


FORMATS = {f.name: f for f in (Official(), UltralyticsRtdetr(), UltralyticsRtdetrTopk(), YoloEnd2End(), Rfdetr())}


@dataclass(frozen=True)
class Recognised:
    """A graph matched to its format.

    kind: the format's name; image_input: name of the image input; output_names: outputs to fetch,
    in the order decode takes them; batch: fixed batch size or None when dynamic;
    input_size: (H, W) declared by the graph, or None when dynamic; num_classes: C where known.
    """

    format: Format
    image_input: str
    output_names: list
    batch: object
    input_size: object
    num_classes: object

    @property
    def kind(self):
        return self.format.name

    def feeds(self, blob, canvas_sizes):
        return self.format.feeds(self.image_input, blob, canvas_sizes)

    def decode(self, outputs, canvas_size):
        return self.format.decode(outputs, canvas_size)


def official(input_size):
    """The official signature of a graph with a dynamic batch and input_size = (H, W), for models
    that are not an ONNX file but compute what one of that signature does (a PyTorch checkpoint)."""
    return Recognised(FORMATS["official"], "images", list(OFFICIAL_OUTPUTS), None, tuple(input_size), None)


def known_formats():
    return "; ".join(f"{f.name}: {f.layout}" for f in FORMATS.values())


def recognise(inputs, outputs, path, metadata_props, model_format=None):
    """Match a graph's NodeArgs and metadata_props to one format; ModelFileError saying why not.

    model_format: a FORMATS name that skips recognition (the graph must still have its shape).
    """
    found = f"found inputs {describe(inputs)}; outputs {describe(outputs)}"
    if model_format is not None:
        if model_format not in FORMATS:
            raise ConfigError(f"model_format={model_format!r}, expected one of {list(FORMATS)}")
        chosen = FORMATS[model_format]
        problem = chosen.misfit(inputs, outputs)
        if problem is not None:
            raise ModelFileError(f"{path}: model_format={model_format!r} but {problem}; {found}")
        return _recognised(chosen, inputs, outputs, metadata_props)
    fitting = [f for f in FORMATS.values() if f.misfit(inputs, outputs) is None]
    verdicts = {f.name: f.verdict(metadata_props) for f in fitting}
    confirmed = [f for f in fitting if verdicts[f.name][0] is True]
    undecided = [f for f in fitting if verdicts[f.name][0] is None]
    if len(confirmed) == 1:
        return _recognised(confirmed[0], inputs, outputs, metadata_props)
    if not confirmed and len(undecided) == 1 and not undecided[0].needs_metadata:
        return _recognised(undecided[0], inputs, outputs, metadata_props)
    candidates = confirmed or undecided
    if len(candidates) == 1:
        only = candidates[0]
        raise ModelFileError(
            f"{path}: has the shape of {only.name} ({only.layout}) but {verdicts[only.name][1]}; {found}. "
            f"If it is one, pass model_format={only.name!r}")
    if candidates:
        reasons = "; ".join(f"{f.name} ({verdicts[f.name][1] or f.layout})" for f in candidates)
        raise ModelFileError(
            f"{path}: cannot tell which format it is, nothing in the file decides between: {reasons}; {found}. "
            f"Pass model_format={' or '.join(repr(f.name) for f in candidates)}, whichever it is")
    refused = "".join(f"; {verdicts[f.name][1]}" for f in fitting if verdicts[f.name][1])
    raise ModelFileError(f"{path}: not a detection model of a known format{refused}; {found}; "
                         f"known formats: {known_formats()}")


def _recognised(chosen, inputs, outputs, props):
    image = chosen.image_input(inputs)
    return Recognised(chosen, image.name, chosen.output_names(outputs), static_dim(image.shape[0]),
                      declared_size(image), chosen.num_classes(outputs, props))


def settle_preparation(recognised, metadata, props, *, resize_mode=None, normalization=None):
    """Set metadata.resize_mode and metadata.normalization: the option where one is given, else the
    file's detr_ros metadata, else the format's default. Returns what was chosen and why, for the log."""
    for option, value, choices in (("resize_mode", resize_mode, RESIZE_MODES),
                                   ("normalization", normalization, tuple(NORMALIZATIONS))):
        if value is not None and value not in choices:
            raise ConfigError(f"{option}={value!r}, expected one of {list(choices)}")
    resize_from_file = KEY_RESIZE_MODE in props
    metadata.resize_mode = resize_mode or (metadata.resize_mode if resize_from_file else recognised.format.resize_mode)
    metadata.normalization = normalization or recognised.format.normalization
    resize_source = "option" if resize_mode else "file" if resize_from_file else f"{recognised.kind} default"
    normalization_source = "option" if normalization else f"{recognised.kind} default"
    return (f"{metadata.resize_mode} ({resize_source}), normalization {metadata.normalization} "
            f"({normalization_source})")
