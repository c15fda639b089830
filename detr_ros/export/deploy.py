"""deploy_for_inference: a trained detr_ros model rewritten for inference, with the same outputs.

The modeling modules compute one way, the way they train. What inference allows on top (RepVGG
branches fused, linear maps that follow one another folded into one, constants where the input size
is fixed) is done here, by substituting modules of detr_ros.export for trained ones in a copy of the
model tree: DeployedHybridEncoder, DeployedRTDETRTransformer (with DeployedMSDeformableAttention in
its layers) and, at a fixed size, depthwise convolutions for the backbone's shortcut pools. The
export, ``detr-ros detect`` and ``detr-ros explain`` run the rewritten model.
"""

import copy

import torch

from detr_ros.export.deployed_backbone import shortcut_pools_as_convolutions
from detr_ros.export.deployed_decoder import DeployedRTDETRTransformer
from detr_ros.export.deployed_encoder import DeployedHybridEncoder
from detr_ros.modeling.rtdetr import RTDETR


@torch.no_grad()
def deploy_for_inference(model, input_size=None):
    """A copy of ``model`` in eval mode, rewritten for inference with the same outputs; ``model``
    stays as it is (train it, save its checkpoint as before).

    input_size: (H, W) when the copy will only see that size (a fixed-size export): sizes taken from
    tensors then become constants in a trace (anchors, position embedding), and the shortcut pools
    convolutions where H and W are multiples of 32. None: any size.
    RT-DETR is rewritten; DETR has nothing to rewrite and comes back as an eval-mode copy.
    """
    deployed = copy.deepcopy(model).eval()
    if isinstance(deployed, RTDETR):
        fixed_size = input_size is not None
        if fixed_size:
            shortcut_pools_as_convolutions(deployed.backbone, input_size)
        deployed.encoder = DeployedHybridEncoder(deployed.encoder, fixed_size)
        deployed.decoder = DeployedRTDETRTransformer(deployed.decoder, fixed_size)
    return deployed.eval()  # the modules made above start in training mode
