"""What the deployed subclasses of trained modules share (DeployedHybridEncoder,
DeployedRTDETRTransformer, DeployedMSDeformableAttention): they take over a trained module's parts,
and at a fixed input size they read feature map sizes as constants.

Each computes the trained module's outputs differently, through the trained class's methods where
those still apply, and keeps the trained module's names for the parts it keeps, so the exported
graph's node and weight names are the model's.
"""

import copy


def take_over(module, trained):
    """Give a just-made ``module`` what ``trained`` holds: its settings, submodules, parameters and
    buffers, as the same objects, in registries of its own.

    The deployed subclasses' constructors call this instead of the trained class's constructor, which
    would build fresh layers from a config. The deployed module then owns the parts and may rewrite
    the submodules it took over; detr_ros.export.deploy hands it a copy of the trained model.
    """
    for name, value in vars(trained).items():
        module.__dict__[name] = copy.copy(value)


class FixedSizeMaps:
    """Feature map sizes for a deployed module whose ``fixed_size`` says the model sees one input size.

    Then they are Python ints, which a trace bakes in: what only depends on them (anchors, the
    position embedding, reshapes) becomes a constant, where otherwise the graph computes it for each
    input. Overrides the trained modules' ``_map_size``.
    """

    def _map_size(self, feature_map):
        """(H, W) of a [..., H, W] map: ints at a fixed size, else as the tensor gives them."""
        height, width = super()._map_size(feature_map)
        return (int(height), int(width)) if self.fixed_size else (height, width)
