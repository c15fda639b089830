"""Detections drawn on a picture (the debug image, annotated outputs) and pictures tiled into a sheet."""

import colorsys

import cv2
import numpy as np


def class_colour(class_id):
    """A stable, well separated RGB colour per class (golden-ratio hue steps)."""
    red, green, blue = colorsys.hsv_to_rgb((class_id * 0.618033988749895) % 1.0, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_detections(image, color_order, boxes, scores, class_ids, names):
    """Return an RGB copy of ``image`` with the detections drawn.

    image: uint8 [H, W, 3] in ``color_order`` ("rgb" | "bgr"); boxes: [n, 4] xyxy source pixels;
    scores: [n]; class_ids: [n] training-class indices (they pick the colour); names: [n] labels.
    """
    canvas = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color_order == "bgr" else np.array(image)
    thickness = max(1, round(min(canvas.shape[:2]) / 320))
    for (x0, y0, x1, y1), score, class_id, name in zip(boxes.tolist(), scores.tolist(), class_ids.tolist(), names):
        colour = class_colour(class_id)
        top_left = (int(round(x0)), int(round(y0)))
        cv2.rectangle(canvas, top_left, (int(round(x1)), int(round(y1))), colour, thickness)
        text = f"{name} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, thickness)
        # Label above the box, or inside it when the box touches the top edge.
        text_y = top_left[1] - baseline if top_left[1] - text_h - baseline >= 0 else top_left[1] + text_h
        cv2.rectangle(canvas, (top_left[0], text_y - text_h), (top_left[0] + text_w, text_y + baseline), colour, -1)
        cv2.putText(canvas, text, (top_left[0], text_y), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return canvas


def tile_grid(tiles, columns):
    """Pictures side by side in rows of ``columns``, on white (contact sheets, explain panels).

    tiles: uint8 [h_i, W, 3] arrays of one width W; each row is as tall as the tallest tile.
    """
    width = tiles[0].shape[1]
    height = max(tile.shape[0] for tile in tiles)
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        grid[row * height:row * height + tile.shape[0], column * width:(column + 1) * width] = tile
    return grid
