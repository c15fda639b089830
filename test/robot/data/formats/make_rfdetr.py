"""Makes the RF-DETR fixture with RF-DETR itself (random weights, tiny widths).

Run in a virtual environment holding rfdetr==1.11.2 (PyPI), not the project's:
    pip install rfdetr==1.11.2 && python make_rfdetr.py
RF-DETR's own exporter writes rfdetr_nano.onnx (input "input" [1,3,320,320] ImageNet-normalised;
outputs "dets" [1,300,4] normalised cxcywh and "labels" [1,300,2+1] logits, the last slot being
background); RF-DETR's own ONNX Runtime reference decoder (the one it keeps for parity with its
predict()) gives the golden detections on scene_320x320.png, an image at the network size, so
that no resize takes part (RF-DETR resizes with torchvision, the runtime with OpenCV).
"""

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import onnxruntime
import torch
from golden import HERE, threshold_in_a_gap, write
from rfdetr import RFDETRNano
from rfdetr.export._onnx.inference import _create_onnx_session, _run_inference
from rfdetr.models.backbone import dinov2

IMAGE = HERE / "scene_320x320.png"
NAME = "rfdetr_nano"
SEED = 0
# DINOv2-small is 384 wide and 12 layers deep; this one is 64 wide and 4 deep, with one decoder
# layer, so the file stays small.
WIDTH, LAYERS, HEADS = 64, 4, 2
_small_config = dinov2.get_config


def tiny_config(size, use_registers):
    config = _small_config(size, use_registers)
    config.update(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=HEADS)
    return config


if __name__ == "__main__":
    dinov2.get_config = tiny_config
    dinov2.size_to_width["small"] = WIDTH
    torch.manual_seed(SEED)
    model = RFDETRNano(pretrain_weights=None, num_classes=2, resolution=320, positional_encoding_size=20,
                       out_feature_indexes=[1, 2, 3, 4], hidden_dim=64, sa_nheads=2, ca_nheads=4, dec_layers=1,
                       device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(model.export(output_dir=folder, verbose=False))
        target = HERE / f"{NAME}.onnx"
        shutil.copyfile(exported, target)
    session = _create_onnx_session(target, ["CPUExecutionProvider"])
    everything, _ = _run_inference(session, IMAGE, threshold=0.0)
    threshold = threshold_in_a_gap(everything.confidence)
    found, _ = _run_inference(session, IMAGE, threshold=threshold)
    write(NAME, IMAGE, f"rfdetr=={version('rfdetr')} (PyPI), torch=={torch.__version__}, "
          f"onnxruntime=={onnxruntime.__version__}",
          "RF-DETR Nano layout, 2 classes + no-object: dets [1,300,4], labels [1,300,3]", threshold,
          found.xyxy, found.confidence, found.class_id)
