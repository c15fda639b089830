"""Draws docs/node_dataflow.png: how a camera frame flows through the detector node.

    scripts/run_in_env.sh python docs/make_dataflow_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("node_dataflow.png")
# (x, y, width, height, title, detail, colour); the figure is 16 x 7.2 units
BOXES = {
    "cameras": (0.2, 2.2, 2.3, 2.1, "camera topics",
                "sensor_msgs/Image\nor CompressedImage\none per camera\n(sensor-data QoS)", "#dde8f5"),
    "callback": (3.0, 2.2, 3.1, 2.1, "subscription callback",
                 "either spinning thread:\ndecode and check the image\n(a bad one is counted,\nlogged, skipped)", "#e8f0dd"),
    "slots": (6.6, 2.2, 2.6, 2.1, "latest-frame slots",
              "one per camera:\na newer frame replaces\nthe waiting one\n(counted as dropped)", "#f5ecd9"),
    "model": (9.7, 2.2, 2.9, 2.1, "model run",
              "by the callback that found\nit idle: every waiting frame\nas one batch, ONNX Runtime\n(TensorRT, CUDA or CPU)",
               "#f3dde0"),
    "outputs": (13.3, 2.2, 2.5, 2.1, "per camera",
                "detections\n(vision_msgs/\nDetection2DArray,\nsource image's header)", "#e6e0f3"),
    "debug": (13.3, 0.2, 2.5, 1.4, "debug_image", "boxes drawn, only\nwhile subscribed", "#eeeeee"),
    "diagnostics": (9.7, 4.9, 2.9, 1.4, "/diagnostics, about 1 Hz",
                    "rates, latency p50/p99,\ndropped and rejected frames", "#eeeeee"),
    "label_info": (13.3, 4.9, 2.5, 1.4, "label_info", "at start and when the\nthreshold changes", "#eeeeee"),
}
ARROWS = [("cameras", "callback"), ("callback", "slots"), ("slots", "model"), ("model", "outputs"),
          ("model", "debug"), ("model", "diagnostics")]


def anchor(name, towards):
    x, y, width, height = BOXES[name][:4]
    tx, ty, tw, th = BOXES[towards][:4]
    if abs((ty + th / 2) - (y + height / 2)) < 0.5:  # side by side: right edge to left edge
        return (x + width, y + height / 2) if tx > x else (x, y + height / 2)
    return (x + width / 2, y) if ty < y else (x + width / 2, y + height)


def main():
    figure, axis = plt.subplots(figsize=(16, 7.2), dpi=100)
    axis.set(xlim=(0, 16), ylim=(0, 7.2))
    axis.axis("off")
    for x, y, width, height, title, detail, colour in BOXES.values():
        axis.add_patch(FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.05", facecolor=colour,
                                      edgecolor="#444444"))
        axis.text(x + width / 2, y + height - 0.25, title, ha="center", va="top", fontsize=12, weight="bold")
        axis.text(x + width / 2, y + height - 0.65, detail, ha="center", va="top", fontsize=10, linespacing=1.3)
    for start, end in ARROWS:
        if BOXES[end][0] > BOXES[start][0] and abs(BOXES[end][1] - BOXES[start][1]) < 0.5:
            points = (anchor(start, end), anchor(end, start))
        else:  # from the model run's bottom or top to the box beside it
            x, y, width, height = BOXES[start][:4]
            ex, ey, _, eh = BOXES[end][:4]
            points = ((x + width, y + 0.3), (ex, ey + eh / 2)) if ey < y else ((x + width / 2, y + height), (ex + 1.45, ey))
        axis.add_patch(FancyArrowPatch(*points, arrowstyle="-|>", mutation_scale=18, color="#333333", linewidth=1.5))
    axis.text(8, 7.15, "detr_ros detector node: one frame's way from camera to detections", ha="center", va="top",
              fontsize=14, weight="bold")
    figure.savefig(OUT, bbox_inches="tight")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
