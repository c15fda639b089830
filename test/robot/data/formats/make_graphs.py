"""Makes one-node graphs of known output shapes, for the runtime's recognition and naming
(run with the project's environment; no upstream involved):

reshape_64x64.onnx: the image [1,3,64,64] reshaped to [1,3,4096], in shape an output [N,Q,4+C] of
  3 queries and 4092 classes, which the runtime must refuse rather than read as Ultralytics'
  RT-DETR layout.
reshape_coco80.onnx: the image [1,3,40,210] reshaped to [1,300,84]: Ultralytics' RT-DETR layout
  with 80 classes and no metadata.
split_coco91.onnx: the image [1,3,19,100] reshaped to [1,60,95] and split into dets [1,60,4] and
  labels [1,60,91]: RF-DETR's layout with a COCO head, whose class slots are category ids.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent


def save(name, nodes, image_name, image_shape, outputs, constants):
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(image_name, TensorProto.FLOAT, image_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape) for output, shape in outputs.items()],
        initializer=[numpy_helper.from_array(np.array(value, np.int64), key) for key, value in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, HERE / f"{name}.onnx")


if __name__ == "__main__":
    save("reshape_64x64", [helper.make_node("Reshape", ["images", "shape"], ["output0"])], "images",
         [1, 3, 64, 64], {"output0": [1, 3, 4096]}, {"shape": [1, 3, 4096]})
    save("reshape_coco80", [helper.make_node("Reshape", ["images", "shape"], ["output0"])], "images",
         [1, 3, 40, 210], {"output0": [1, 300, 84]}, {"shape": [1, 300, 84]})
    save("split_coco91", [helper.make_node("Reshape", ["input", "shape"], ["flat"]),
                          helper.make_node("Split", ["flat", "sizes"], ["dets", "labels"], axis=2)], "input",
         [1, 3, 19, 100], {"dets": [1, 60, 4], "labels": [1, 60, 91]}, {"shape": [1, 60, 95], "sizes": [4, 91]})
