"""Transfer learning: start a network from trained weights of the same architecture on a new data set.

Every tensor is taken as it is, except the two that depend on the data: the classifier is replaced by a new
one when the class count differs (as in the paper's transfer experiments), starting at zero -- a randomly
drawn head on trained features gives large logits that are as likely wrong as right, and a fine-tuning
learning rate takes long to undo them, while a zero head starts at the uniform prediction -- and the
stem's first convolution is adapted when the number of input channels differs (grey <-> RGB): its kernels
are summed over the old channels and spread evenly over the new ones, so a uniform image gives the same
response as before. Anything else that differs means another architecture, and is a NasError.
"""

from __future__ import annotations

import torch
from torch import nn

from nas.errors import NasError

STEM_WEIGHT = "stem.conv.weight"
CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A stem kernel (out, c, k, k) for `in_channels` input channels with the same response to a flat image."""
    return weight.sum(dim=1, keepdim=True).div(in_channels).expand(-1, in_channels, -1, -1).contiguous()


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor], origin: str = "the source weights"
                     ) -> list[str]:
    """Load `source` into `model`, replacing the classifier and adapting the stem where their shapes differ.

    Returns one note per tensor that was not taken as it is (empty when the shapes all match).
    """
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    if missing:
        raise NasError(f"{origin} do not fit this network: no {missing[0]} ({len(missing)} tensor(s) missing); "
                       "--init-from needs weights of the same architecture")
    loaded, notes = {}, []
    for key, tensor in target.items():
        given = source[key]
        if given.shape == tensor.shape:
            loaded[key] = given
        elif key in CLASSIFIER_KEYS:
            loaded[key] = torch.zeros_like(tensor)
            if key == CLASSIFIER_KEYS[0]:
                notes.append(f"classifier replaced: {given.shape[0]} -> {tensor.shape[0]} classes (a new head)")
        elif key == STEM_WEIGHT and given.shape[0] == tensor.shape[0] and given.shape[2:] == tensor.shape[2:]:
            loaded[key] = adapt_stem(given, tensor.shape[1])
            notes.append(f"stem adapted: {given.shape[1]} -> {tensor.shape[1]} input channels")
        else:
            raise NasError(f"{origin} do not fit this network: {key} is {tuple(given.shape)}, the network's is "
                           f"{tuple(tensor.shape)}; --init-from needs weights of the same architecture")
    model.load_state_dict(loaded, strict=True)
    return notes
