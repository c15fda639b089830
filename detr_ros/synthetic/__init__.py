"""Synthetic labelled scenes (numpy + OpenCV only): stills for datasets, video for the camera node.

- ``SceneGenerator(width, height, seed).image(index) -> (bgr, annotations)``
- ``SceneVideo(width, height, seed).frame(index) -> (bgr, annotations)``; ``.render(index)`` adds the
  aligned depth image (metres, seen through ``.intrinsics``); annotations carry ``track_id`` and
  ``position`` (3D, metres); ``traffic=True``: objects enter, cross and leave
- ``CLASSES``: the object classes, with their dataset category ids
"""

from detr_ros.synthetic.scene import ObjectAnnotation, SceneGenerator
from detr_ros.synthetic.shapes import CATEGORY_IDS, CLASS_NAMES, CLASSES
from detr_ros.synthetic.video import SceneVideo

__all__ = ["CATEGORY_IDS", "CLASS_NAMES", "CLASSES", "ObjectAnnotation", "SceneGenerator", "SceneVideo"]
