"""Makes the fixtures of the official signature with each upstream's own code (random weights, tiny widths).

    python make_official.py UPSTREAM CHECKOUT

UPSTREAM is a key of UPSTREAMS; CHECKOUT a checkout of its repository at the commit named there.
Run in a virtual environment with torch, torchvision, onnx, onnxruntime, onnxscript and the
upstreams' requirements (tensorboard, faster-coco-eval, calflops, transformers, PyYAML), not the
project's; the fixtures were made with torch 2.14.1 (whose torch.onnx.export, called as the export
scripts call it, is the dynamo-based exporter, hence onnxscript) and onnxruntime 1.31.1. The model is built from the
upstream's own config with its widths and depths overridden (OVERRIDES, merged by the upstream's
own config loader), its weights noised, saved as the checkpoint its export script loads, and
exported by that script (tools/.../export_onnx.py, in this process, as its main(args)). The
golden detections are those of the upstream's own ONNX Runtime inference script on
scene_640x640.png (its resize is fixed at 640, so the image is at the network size and no resize
takes part): the script's drawing function is swapped for one that keeps what it is handed.
"""

import importlib.util
import importlib
import os
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import onnx
import onnxruntime
import torch
import yaml

from golden import HERE, threshold_in_a_gap, write

IMAGE = HERE / "scene_640x640.png"
SEED = 0
# Freshly initialised heads answer every image alike (box deltas start at zero, class biases at one
# prior); noise on every weight makes the answer depend on the image, as a trained one does.
NOISE = 0.1

# HGNetv2's architecture table entry (stem channels; per stage: in, mid, out channels, blocks,
# downsample, light block, kernel size, layers) at a sixteenth of B0's widths, two layers a stage.
TINY_HGNETV2 = {
    "stem_channels": [3, 8, 8],
    "stage_config": {
        "stage1": [8, 8, 16, 1, False, False, 3, 2],
        "stage2": [16, 16, 32, 1, True, False, 3, 2],
        "stage3": [32, 16, 64, 1, True, True, 5, 2],
        "stage4": [64, 32, 128, 1, True, True, 5, 2],
    },
    "url": "",
}

# D-FINE's and DEIM's N models at tiny widths: the backbone's stages 3 and 4 (64, 128 channels here)
# feed a 32-wide encoder and a one-layer 32-wide decoder.
TINY_DFINE = {
    "HGNetv2": {"name": "B0", "return_idx": [2, 3], "pretrained": False},
    "HybridEncoder": {"in_channels": [64, 128], "hidden_dim": 32, "dim_feedforward": 64, "nhead": 2},
    "DFINETransformer": {"feat_channels": [32, 32], "hidden_dim": 32, "dim_feedforward": 64, "num_layers": 1,
                         "nhead": 2, "eval_idx": -1},
}

UPSTREAMS = {
    "rtdetrv2": {
        "repository": "lyuwenyu/RT-DETR",
        "commit": "068dfde65f2667ad6555883c69d73de886518cad",
        "root": "rtdetrv2_pytorch",
        "package": "src",
        "backbone": "src.nn.backbone.hgnetv2",
        "architecture": "L",
        "config": "configs/rtdetrv2/rtdetrv2_r18vd_120e_coco.yml",
        "export": "tools/export_onnx.py",
        "inference": "references/deploy/rtdetrv2_onnxruntime.py",
        # The upstream's HGNetv2 at tiny widths replaces the ResNet-18, whose widths are fixed;
        # encoder and decoder are 32 wide, with one decoder layer.
        "overrides": {
            "RTDETR": {"backbone": "HGNetv2"},
            "HGNetv2": {"name": "L", "return_idx": [1, 2, 3], "pretrained": False},
            "HybridEncoder": {"in_channels": [32, 64, 128], "hidden_dim": 32, "dim_feedforward": 64, "nhead": 2},
            "RTDETRTransformerv2": {"feat_channels": [32, 32, 32], "hidden_dim": 32, "num_layers": 1, "nhead": 2,
                                    "dim_feedforward": 64},
        },
    },
    "dfine": {
        "repository": "Peterande/D-FINE",
        "commit": "4a1f73a8bcfac736a88abde9596d87f116d780a7",
        "root": ".",
        "package": "src",
        "backbone": "src.nn.backbone.hgnetv2",
        "architecture": "B0",
        "config": "configs/dfine/dfine_hgnetv2_n_coco.yml",
        "export": "tools/deployment/export_onnx.py",
        "inference": "tools/inference/onnx_inf.py",
        "overrides": TINY_DFINE,
    },
    "deim": {
        "repository": "ShihuaHuang95/DEIM",
        "commit": "a9aa4adce6b5e97b2a6ca9452bf01b7c35440913",
        "root": ".",
        "package": "engine",
        "backbone": "engine.backbone.hgnetv2",
        "architecture": "B0",
        "config": "configs/deim_dfine/deim_hgnetv2_n_coco.yml",
        "export": "tools/deployment/export_onnx.py",
        "inference": "tools/inference/onnx_inf.py",
        "overrides": TINY_DFINE,
    },
    "rtdetrv4_s": {
        "repository": "RT-DETRs/RT-DETRv4",
        "commit": "df4412261c6162f62aa4fb84e90b2df3c1b5f223",
        "root": ".",
        "package": "engine",
        "backbone": "engine.backbone.hgnetv2",
        "architecture": "B0",
        "config": "configs/rtv4/rtv4_hgnetv2_s_coco.yml",
        "export": "tools/deployment/export_onnx.py",
        "inference": "tools/inference/onnx_inf.py",
        # The S model's three levels at tiny widths (its DINOv3 teacher takes part in training only).
        "overrides": {
            "HGNetv2": {"name": "B0", "return_idx": [1, 2, 3], "pretrained": False},
            "HybridEncoder": {"in_channels": [32, 64, 128], "hidden_dim": 32, "dim_feedforward": 64, "nhead": 2},
            "DFINETransformer": {"feat_channels": [32, 32, 32], "hidden_dim": 32, "dim_feedforward": 64,
                                 "num_layers": 1, "nhead": 2, "eval_idx": -1},
        },
    },
    "deimv2_s": {
        "repository": "Intellindust-AI-Lab/DEIMv2",
        "commit": "0fff8d4dcdc272e6cf2d84be31399db471357941",
        "root": ".",
        "package": "engine",
        "config": "configs/deimv2/deimv2_dinov3_s_coco.yml",
        "export": "tools/deployment/export_onnx.py",
        "inference": "tools/inference/onnx_inf.py",
        # The S model (a ViT-Tiny distilled from DINOv3, fed ImageNet mean/std) 32 wide instead of 192,
        # without its distilled weights; a 32-wide encoder and a one-layer decoder.
        "overrides": {
            "DINOv3STAs": {"name": "vit_tiny", "embed_dim": 32, "num_heads": 2, "weights_path": None,
                           "interaction_indexes": [3, 7, 11], "conv_inplane": 8},
            "HybridEncoder": {"in_channels": [32, 32, 32], "hidden_dim": 32, "dim_feedforward": 64, "nhead": 2},
            "DEIMTransformer": {"feat_channels": [32, 32, 32], "hidden_dim": 32, "dim_feedforward": 64,
                                "num_layers": 1, "nhead": 2, "eval_idx": -1},
        },
    },
}


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(upstream, checkout):
    spec = UPSTREAMS[upstream]
    root = Path(checkout).resolve() / spec["root"]
    os.chdir(root)
    sys.path.insert(0, str(root))
    if "backbone" in spec:  # HGNetv2's architecture table is a class attribute, not part of the YAML config
        importlib.import_module(spec["backbone"]).HGNetv2.arch_configs[spec["architecture"]] = TINY_HGNETV2
    config_loader = importlib.import_module(f"{spec['package']}.core").YAMLConfig

    work = Path(tempfile.mkdtemp())
    config = work / "tiny.yml"
    config.write_text(yaml.safe_dump({"__include__": [str(root / spec["config"])], **spec["overrides"]}))
    torch.manual_seed(SEED)
    model = config_loader(str(config)).model
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():  # D-FINE keeps an integer table among its parameters
                parameter.add_(torch.randn_like(parameter) * NOISE)
    checkpoint = work / f"{upstream}.pth"
    torch.save({"model": model.state_dict()}, checkpoint)

    # RT-DETRv2's script writes output_file; D-FINE's and DEIM's write the checkpoint's name with .onnx.
    target = work / f"{upstream}.onnx"
    export = load_module(root / spec["export"], "upstream_export")
    export.main(Namespace(config=str(config), resume=str(checkpoint), output_file=str(target), input_size=640,
                          check=True, simplify=False, update=None, opset=17))
    # torch's current exporter keeps the weights in a file beside the graph, and each node's Python
    # stack trace in the graph: one file is one fixture, and the traces are half of it.
    exported = onnx.load(target)
    for node in exported.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    target = HERE / target.name
    onnx.save(exported, target)

    kept = {}

    def keep(images, labels, boxes, scores, *rest, **options):
        kept.update(labels=labels[0], boxes=boxes[0], scores=scores[0])
        return images

    inference = load_module(root / spec["inference"], "upstream_inference")
    inference.draw = keep
    os.chdir(work)  # where the script saves its drawing
    inference.main(Namespace(onnx_file=str(target), im_file=str(IMAGE), onnx=str(target), input=str(IMAGE),
                             model_size=upstream.partition("_")[2] or None))
    # Random weights leave these heads' scores close together (near their class prior): a narrower
    # gap, still five times the test's score tolerance.
    threshold = threshold_in_a_gap(kept["scores"], gap=5e-5)
    chosen = kept["scores"] > threshold  # the inference script's own rule: scores above its threshold
    write(upstream, IMAGE, f"{spec['repository']}@{spec['commit']}, torch=={torch.__version__}, "
          f"onnxruntime=={onnxruntime.__version__}", f"{upstream}: official signature, 80 classes", threshold,
          kept["boxes"][chosen], kept["scores"][chosen], kept["labels"][chosen])


if __name__ == "__main__":
    main(*sys.argv[1:])
