"""Writes the synthetic scenes the format fixtures are run on (run with the project's environment).

scene_240x320.png: a camera-shaped frame, for upstreams that resize with OpenCV as the runtime does
(Ultralytics), so that stretch and letterbox are exercised. scene_320x320.png and scene_640x640.png: frames at
the network size of the fixtures whose upstream resizes with PIL or torchvision (interpolations
that differ from OpenCV's): at the network size no resize happens on either side.
"""

from pathlib import Path

import cv2

from detr_ros.synthetic import SceneGenerator

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for height, width in ((240, 320), (320, 320), (640, 640)):
        bgr, _ = SceneGenerator(width, height, seed=7).image(0)
        cv2.imwrite(str(HERE / f"scene_{height}x{width}.png"), bgr)
