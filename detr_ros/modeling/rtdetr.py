"""RT-DETR: PResNet backbone -> hybrid encoder -> decoder with query selection.

"DETRs Beat YOLOs on Real-time Object Detection" (Zhao et al., CVPR 2024) and RT-DETRv2
(Lv et al., 2024); module layout as in lyuwenyu/RT-DETR so that its checkpoints map directly.
"""

from torch import nn


class RTDETR(nn.Module):
    """The full detector. Parts are built by detr_ros.modeling.build.build_model and handed in.

    images: [B, 3, H, W] float RGB in [0, 1], any H and W (multiples of 32 are the native sizes)
    targets: training only, list of {"labels": LongTensor[n], "boxes": FloatTensor[n, 4] cxcywh in [0, 1]}
    Returns a dict with
      pred_logits: [B, num_queries, num_classes] sigmoid class logits
      pred_boxes: [B, num_queries, 4] cxcywh normalised to [0, 1]
    and in training aux_outputs, enc_aux_outputs, dn_aux_outputs, dn_meta (see RTDETRTransformer).
    """

    def __init__(self, backbone, encoder, decoder):
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, images, targets=None):
        features = self.backbone(images)
        return self.decoder(self.encoder(features), targets)

    def deploy(self, input_size=None):
        """Eval mode, rewritten for inference with the same outputs: RepVGG blocks fused, linear maps
        that follow one another folded into one (see HybridEncoder.deploy, RTDETRTransformer.deploy).
        input_size: (H, W) when the model will only see that size (a fixed-size export); a deployed
        model can be handed it in a second call.

        The deployed model's state dict differs from the trained one, so save checkpoints before this.
        """
        self.eval()
        # One input size: sizes taken from tensors become constants in a trace (anchors, position
        # embedding), where otherwise the graph computes them for each input.
        self.encoder.fixed_size = self.decoder.fixed_size = input_size is not None
        self.backbone.deploy(input_size)
        self.encoder.deploy()
        self.decoder.deploy()
        return self
