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
