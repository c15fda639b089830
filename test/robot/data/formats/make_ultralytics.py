"""Makes the Ultralytics fixtures with Ultralytics itself (random weights, tiny widths).

Run in a virtual environment holding the Ultralytics release named below, not the project's:
    pip install ultralytics==8.3.253 && python make_ultralytics.py   # ultralytics_rtdetr_v8_3.*
    pip install ultralytics==8.4.190 && python make_ultralytics.py   # ultralytics_rtdetr_v8_4.*, yolo26_end2end.*
Each model is exported by Ultralytics' own exporter (format="onnx") and run by Ultralytics' own
predictor on that ONNX file; the detections it returns, in source-image pixels, are the golden
answer that test_formats.py expects of the Detector.
"""

import sys
from pathlib import Path

import cv2
import torch
import ultralytics
from golden import HERE, threshold_in_a_gap, write
from ultralytics import RTDETR, YOLO
from ultralytics.utils import YAML
from ultralytics.utils.checks import check_yaml

IMAGE = HERE / "scene_240x320.png"
IMGSZ = 320
SEED = 0
NOISE = 0.1
# A tiny RT-DETR with Ultralytics' own modules, laid out as rtdetr-l.yaml but a few channels wide and
# two decoder layers deep, so the file stays small; the output layout is the decoder head's and
# does not depend on the widths.
RTDETR_YAML = """
nc: 2
backbone:
  - [-1, 1, HGStem, [8, 16]]
  - [-1, 1, HGBlock, [8, 16, 3]]
  - [-1, 1, DWConv, [32, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [16, 32, 3]]
  - [-1, 1, DWConv, [64, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [32, 64, 5, True, False]]
  - [-1, 1, DWConv, [128, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [64, 128, 5, True, False]]
head:
  - [-1, 1, Conv, [64, 1, 1, None, 1, 1, False]]
  - [-1, 1, AIFI, [128, 4]]
  - [-1, 1, Conv, [64, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [5, 1, Conv, [64, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [64]]
  - [-1, 1, Conv, [64, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [3, 1, Conv, [64, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [64]]
  - [-1, 1, Conv, [64, 3, 2]]
  - [[-1, 15], 1, Concat, [1]]
  - [-1, 1, RepC3, [64]]
  - [-1, 1, Conv, [64, 3, 2]]
  - [[-1, 10], 1, Concat, [1]]
  - [-1, 1, RepC3, [64]]
  - [[19, 22, 25], 1, RTDETRDecoder, [nc, 64, 300, 4, 4, 2, 128]]
"""


def golden(model_path, name, make_model, description):
    """Ultralytics' predictor on the exported file -> <name>.json beside <name>.onnx."""
    image = cv2.imread(str(IMAGE))
    model = make_model(str(model_path))
    everything = model.predict(image, imgsz=IMGSZ, conf=0.0, max_det=300, verbose=False)[0].boxes
    threshold = threshold_in_a_gap(everything.conf.numpy())
    found = make_model(str(model_path)).predict(image, imgsz=IMGSZ, conf=threshold, max_det=300, verbose=False)[0].boxes
    write(name, IMAGE, f"ultralytics=={ultralytics.__version__} (PyPI), torch=={torch.__version__}", description,
          threshold, found.xyxy.numpy(), found.conf.numpy(), found.cls.numpy())


def export(model, name, **options):
    # Freshly initialised heads answer every image alike (box deltas start at zero, class biases at
    # one prior); noise on every weight makes the answer depend on the image, as a trained one does.
    with torch.no_grad():
        for parameter in model.model.parameters():
            parameter.add_(torch.randn_like(parameter) * NOISE)
    exported = Path(model.export(format="onnx", imgsz=IMGSZ, simplify=True, dynamic=False, **options))
    target = HERE / f"{name}.onnx"
    exported.replace(target)
    return target


def rtdetr(name, description):
    torch.manual_seed(SEED)
    yaml_path = Path("/tmp") / "rtdetr-tiny.yaml"
    yaml_path.write_text(RTDETR_YAML)
    path = export(RTDETR(str(yaml_path)), name)
    golden(path, name, RTDETR, description)


def yolo26(name, description):
    torch.manual_seed(SEED)
    # Ultralytics' own yolo26.yaml with its "n" scale narrowed to an eighth of the widths, so the
    # file stays small; the scale letter is read from the file name.
    config = YAML.load(check_yaml("yolo26.yaml"))
    config["scales"] = {"n": [0.33, 0.125, 256]}
    folder = Path("/tmp/yolo26-tiny")
    folder.mkdir(exist_ok=True)
    YAML.save(folder / "yolo26n.yaml", config)
    model = YOLO(str(folder / "yolo26n.yaml"))
    # The class convolutions start at a prior of a few in ten thousand; from zero the scores spread.
    with torch.no_grad():
        for branch in model.model.model[-1].one2one_cv3:
            branch[-1].bias.zero_()
    # nms=False keeps the one-to-one (NMS-free) branch; by default the raw grid is exported.
    path = export(model, name, nms=False)
    golden(path, name, YOLO, description)


if __name__ == "__main__":
    major_minor = tuple(int(v) for v in ultralytics.__version__.split(".")[:2])
    if major_minor == (8, 3):
        rtdetr("ultralytics_rtdetr_v8_3", "RT-DETR, 2 classes: output0 [1,300,4+2] (normalised cxcywh, class scores)")
    elif major_minor == (8, 4):
        rtdetr("ultralytics_rtdetr_v8_4", "RT-DETR, 2 classes: output0 [1,300,6] (normalised cxcywh, score, class)")
        yolo26("yolo26_end2end", "YOLO26n, 80 classes: output0 [1,300,6] (xyxy input pixels, score, class)")
    else:
        sys.exit(f"ultralytics {ultralytics.__version__}: expected 8.3 or 8.4")
