"""Fused ℓ ≤ 1 layers in training: the inference path's kernels, differentiable in the weights.

Training runs the e3nn layers' own parameters (the checkpoint format is unchanged) but computes
each two-body layer the way :class:`~matdesign.fused_layers.FusedInteraction` does: the input and
output maps are read off the e3nn modules as matrices on every step
(:func:`~matdesign.fused_layers.fused_maps`, differentiable), the tensor-product paths are
broadcast products on component-major blocks (:func:`~matdesign.fused_layers.fused_messages`),
and the radial network and self-connection are the layer's own. The loss and its gradients
equal those of e3nn's kernels to rounding (``tests/test_training_pieces.py``); a training step
(energy, forces and stress loss, double backward) takes about 0.7× the time
(benchmarks/README.md, tenth session).
"""

from __future__ import annotations

import torch

from matdesign.fused_layers import (
    FusedLayout,
    fusable,
    fused_maps,
    fused_messages,
    fused_output,
    sender_blocks,
)
from matdesign.layers import Interaction, aggregate_messages


class TrainingFusion:
    """The fused forward of one :class:`~matdesign.layers.Interaction` in training mode.

    Holds only the layer's static layout (read once, no parameters): the weights are the
    layer's, read on every call, so optimiser, EMA and checkpoints see the e3nn modules.
    """

    def __init__(self, layer: Interaction) -> None:
        self.layout = FusedLayout.of(layer)

    def __call__(self, layer: Interaction, h: torch.Tensor, species_onehot: torch.Tensor,
                 edge_index: torch.Tensor, edge_sh: torch.Tensor, edge_radial: torch.Tensor
                 ) -> torch.Tensor:
        w_in, w_out = fused_maps(layer, self.layout, h.dtype)

        def messages(*inputs: torch.Tensor) -> torch.Tensor:
            *x, sh, radial = inputs
            weights = layer.radial(radial).split(self.layout.channels, dim=1)
            return fused_messages(tuple(x), sh, weights, self.layout)

        aggs = aggregate_messages(messages, edge_index, h.shape[0],
                                  sender_blocks(h, w_in, self.layout), edge_sh, edge_radial,
                                  chunked=False)
        out = layer.gate(fused_output(aggs, w_out) + layer.self_connection(h, species_onehot))
        return out + h if layer.residual else out


def fuse_for_training(model: torch.nn.Module) -> int:
    """Give every fusable two-body layer of ``model`` the fused training forward (used while
    the layer is in training mode; evaluation keeps e3nn's kernels).

    Returns:
        The number of layers fused.
    """
    count = 0
    for layer in model.modules():
        if isinstance(layer, Interaction) and fusable(layer):
            layer.training_fusion = TrainingFusion(layer)
            count += 1
    return count
