"""Where the model looked, for one image, as PNG files (``detr-ros explain``).

DETR (``detr_encoder_attention.png``, ``detr_decoder_attention.png``): the last encoder layer's
self-attention from chosen points (default the centres of the detections) over the
feature map, and the last decoder layer's cross-attention of each selected detection's query.

RT-DETR (``rtdetr_sampling_points.png``): for each selected detection, the deformable
cross-attention of the decoder layer that makes the output: per feature level, the sampling
points of all heads, drawn larger and warmer the more weight they carry.

The attention is read with forward hooks on the models' own modules; nothing is recomputed
differently from the forward pass. The selected detections are the queries with the highest
class score (at most ``detections`` of them, scoring at least ``score_threshold``).
"""

import contextlib
from pathlib import Path

import cv2
import numpy as np

from detr_ros.errors import ConfigError, DatasetError
from detr_ros.runtime.drawing import class_colour, tile_grid
from detr_ros.runtime.encoded_images import read_image_file

PANEL_WIDTH = 360
TITLE_HEIGHT = 22
HEAT_ALPHA = 0.55
LEVEL_STRIDES = (8, 16, 32)


@contextlib.contextmanager
def _captured_calls(module, store):
    """Record every call's (args, kwargs) of ``module`` into ``store`` while the context lasts."""
    handle = module.register_forward_pre_hook(lambda _, args, kwargs: store.append((args, kwargs)),
                                              with_kwargs=True)
    try:
        yield store
    finally:
        handle.remove()


@contextlib.contextmanager
def _captured_sampling(store):
    """Record the sampling locations and weights each deformable attention call hands to its sampler.

    MSDeformableAttention has no submodule that sees them, so its module-level sampling function is
    wrapped for the duration of the forward pass.
    """
    from detr_ros.modeling import deformable_attention

    original = deformable_attention.sample_multi_scale

    def recording(value_maps, spatial_shapes, sampling_locations, attention_weights, num_points_list, method):
        store.append({"spatial_shapes": list(spatial_shapes), "locations": sampling_locations.detach(),
                      "weights": attention_weights.detach(), "num_points": list(num_points_list)})
        return original(value_maps, spatial_shapes, sampling_locations, attention_weights, num_points_list, method)

    deformable_attention.sample_multi_scale = recording
    try:
        yield store
    finally:
        deformable_attention.sample_multi_scale = original


def _attention_weights(module, call):
    """Head-averaged weights [B, L_query, L_key] of an nn.MultiheadAttention call, recomputed by the module."""
    args, kwargs = call
    kwargs = dict(kwargs, need_weights=True, average_attn_weights=True)
    return module(*args, **kwargs)[1]


def select_queries(pred_logits, architecture, count, threshold):
    """Indices, classes and scores of the best queries of one image.

    pred_logits: [Q, C] (RT-DETR: sigmoid logits; DETR: softmax logits with the last = no object).
    """
    if architecture == "detr":
        scores, classes = pred_logits.softmax(-1)[:, :-1].max(-1)
    else:
        scores, classes = pred_logits.sigmoid().max(-1)
    order = scores.argsort(descending=True)[:count]
    order = order[scores[order] >= threshold]
    return order.tolist(), classes[order].tolist(), scores[order].tolist()


def _pixel_boxes(pred_boxes, width, height):
    """pred_boxes: [n, 4] cxcywh in [0, 1] -> list of (x0, y0, x1, y1) pixels."""
    boxes = []
    for cx, cy, w, h in pred_boxes.tolist():
        boxes.append(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return boxes


def _panel(image_bgr, title):
    """A copy of the image scaled to PANEL_WIDTH with a title bar; returns (panel, scale)."""
    scale = PANEL_WIDTH / image_bgr.shape[1]
    body = cv2.resize(image_bgr, (PANEL_WIDTH, max(1, round(image_bgr.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    bar = np.full((TITLE_HEIGHT, PANEL_WIDTH, 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, body]), scale


def _overlay_heat(image_bgr, heat):
    """Blend a [h, w] map (any range) over the image as a JET heat map."""
    heat = heat - heat.min()
    heat = heat / heat.max() if heat.max() > 0 else heat
    heat = cv2.resize(heat.astype(np.float32), (image_bgr.shape[1], image_bgr.shape[0]), interpolation=cv2.INTER_CUBIC)
    coloured = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image_bgr, 1 - HEAT_ALPHA, coloured, HEAT_ALPHA, 0)


def _draw_box(image_bgr, box, class_id, thickness=2):
    red, green, blue = class_colour(class_id)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(image_bgr, (x0, y0), (x1, y1), (blue, green, red), thickness)


def _label(class_names, class_id, score):
    name = class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"
    return f"{name} {score:.2f}"


def explain_detr(model, images, image_bgr, class_names, count, threshold, points):
    """{file name: PNG image} for a DETR model. images: [1, 3, H, W] network input."""
    import torch

    encoder_layers = model.transformer.encoder.layers
    decoder_attention = model.transformer.decoder.layers[-1].multihead_attn
    feature_shapes, encoder_calls, decoder_calls = [], [], []
    shape_hook = model.input_proj.register_forward_hook(lambda _, __, output: feature_shapes.append(output.shape[-2:]))
    with contextlib.ExitStack() as stack:
        if len(encoder_layers):
            stack.enter_context(_captured_calls(encoder_layers[-1].self_attn, encoder_calls))
        stack.enter_context(_captured_calls(decoder_attention, decoder_calls))
        with torch.no_grad():
            outputs = model(images)
    shape_hook.remove()
    feature_h, feature_w = (int(v) for v in feature_shapes[-1])
    height, width = image_bgr.shape[:2]
    queries, classes, scores = select_queries(outputs["pred_logits"][0], "detr", count, threshold)
    boxes = _pixel_boxes(outputs["pred_boxes"][0, queries], width, height)
    pictures = {}
    with torch.no_grad():
        cross = _attention_weights(decoder_attention, decoder_calls[-1])[0]  # [Q, h*w]
    tiles = []
    for query, class_id, score, box in zip(queries, classes, scores, boxes):
        heat = cross[query].reshape(feature_h, feature_w).numpy()
        canvas = _overlay_heat(image_bgr, heat)
        _draw_box(canvas, box, class_id)
        tiles.append(_panel(canvas, f"query {query}: {_label(class_names, class_id, score)}")[0])
    if tiles:
        pictures["detr_decoder_attention.png"] = tile_grid(tiles, 3)

    if encoder_calls:
        if points is None:
            points = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes]
        with torch.no_grad():
            self_attention = _attention_weights(encoder_layers[-1].self_attn, encoder_calls[-1])[0]  # [h*w, h*w]
        tiles = []
        for x, y in points:
            cell = min(int(y / height * feature_h), feature_h - 1) * feature_w + min(int(x / width * feature_w),
                                                                                     feature_w - 1)
            canvas = _overlay_heat(image_bgr, self_attention[cell].reshape(feature_h, feature_w).numpy())
            cv2.drawMarker(canvas, (int(x), int(y)), (255, 255, 255), cv2.MARKER_CROSS,
                           max(12, width // 25), max(2, width // 300))
            tiles.append(_panel(canvas, f"encoder self-attention from ({x:.0f}, {y:.0f})")[0])
        if tiles:
            pictures["detr_encoder_attention.png"] = tile_grid(tiles, 3)
    return pictures


def explain_rtdetr(model, images, image_bgr, class_names, count, threshold):
    """{file name: PNG image} for an RT-DETR model. images: [1, 3, H, W] network input."""
    import torch

    calls = []
    with _captured_sampling(calls), torch.no_grad():
        outputs = model(images)
    # The last call in eval mode is the decoder layer whose output is the model's.
    sampling = calls[-1]
    height, width = image_bgr.shape[:2]
    queries, classes, scores = select_queries(outputs["pred_logits"][0], "rtdetr", count, threshold)
    boxes = _pixel_boxes(outputs["pred_boxes"][0, queries], width, height)
    levels = len(sampling["spatial_shapes"])
    dimmed = (image_bgr * 0.6).astype(np.uint8)
    tiles = []
    for query, class_id, score, box in zip(queries, classes, scores, boxes):
        # Each head's weights sum to 1 over the points of all levels.
        locations = sampling["locations"][0, query].split(sampling["num_points"], dim=-2)  # per level [heads, p, 2]
        weights = sampling["weights"][0, query].split(sampling["num_points"], dim=-1)  # per level [heads, p]
        strongest = max(float(w.max()) for w in weights)
        for level in range(levels):
            stride = f"stride {LEVEL_STRIDES[level]}" if level < len(LEVEL_STRIDES) else f"level {level}"
            panel, scale = _panel(dimmed, f"query {query} {_label(class_names, class_id, score)} | {stride}")
            body = panel[TITLE_HEIGHT:]
            num_heads = weights[level].shape[0]
            points = locations[level].reshape(-1, 2).tolist()
            relative = (weights[level].reshape(-1) / strongest).tolist()
            for (x, y), weight in sorted(zip(points, relative), key=lambda p: p[1]):  # strongest drawn on top
                colour = cv2.applyColorMap(np.uint8([[round(weight * 255)]]), cv2.COLORMAP_JET)[0, 0]
                centre = (int(round(x * width * scale)), int(round(y * height * scale)))
                cv2.circle(body, centre, 2 + int(round(8 * np.sqrt(weight))), tuple(int(c) for c in colour), -1,
                           cv2.LINE_AA)
            _draw_box(body, [v * scale for v in box], class_id, thickness=1)  # over the points, still visible
            share = float(weights[level].sum()) / num_heads
            cv2.putText(body, f"{len(points)} points, {share:.0%} of the attention", (4, body.shape[0] - 6),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(panel)
    return {"rtdetr_sampling_points.png": tile_grid(tiles, levels)} if tiles else {}


def explain(checkpoint, image_path, out, *, detections=3, score_threshold=0.0, points=None):
    """Draw where a checkpoint's model looked in one image into PNG files in ``out``.

    detections: how many of the best-scoring queries to explain; score_threshold: the lowest score
    of an explained query; points: DETR only, (x, y) image pixels whose encoder self-attention to draw
    (None: the detections' centres). Returns the paths written (none when no query scored enough).
    """
    from detr_ros.tools.checkpoint_detector import CheckpointDetector

    if detections < 1:
        raise ConfigError(f"--detections {detections}, expected at least 1")
    image_bgr = read_image_file(image_path)
    height, width = image_bgr.shape[:2]
    for x, y in points or ():
        if not (0 <= x < width and 0 <= y < height):
            raise ConfigError(f"--points {x:g},{y:g} lies outside the {width}x{height} image")
    detector = CheckpointDetector(checkpoint)
    architecture = detector.config.architecture
    if points is not None and architecture != "detr":
        raise ConfigError("--points applies to DETR's encoder attention; RT-DETR has no global encoder over the "
                          "image, its sampling points are drawn per detection")
    images, _ = detector.network_input(image_bgr, "bgr")
    if architecture == "detr":
        pictures = explain_detr(detector.model, images, image_bgr, detector.class_names, detections,
                                score_threshold, points)
    else:
        pictures = explain_rtdetr(detector.model, images, image_bgr, detector.class_names, detections,
                                  score_threshold)
    written = []
    if pictures:
        Path(out).mkdir(parents=True, exist_ok=True)
    for name, picture in pictures.items():
        path = Path(out) / name
        if not cv2.imwrite(str(path), picture):
            raise DatasetError(f"OpenCV cannot write {path}")
        written.append(path)
    return written
