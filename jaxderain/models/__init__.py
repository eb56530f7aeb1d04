"""Architectures by name: one registry for the model, its loss and its output image.

`python -m jaxderain.models --arch=NAME` prints a JSON summary of one architecture.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxderain.models.resnet import ResNet


def l1_loss(outputs, rainy, clean):
  """Mean absolute error of the derained image against the clean background B."""
  del rainy
  return jnp.mean(jnp.abs(outputs - clean))


@dataclasses.dataclass(frozen=True)
class Architecture:
  """build(**hparams, rngs) -> nnx.Module mapping (B, H, W, 3) rainy images to outputs;
  loss(outputs, rainy, clean) -> scalar; image(outputs) -> (B, H, W, 3) derained image."""
  build: Callable[..., nnx.Module]
  loss: Callable[..., jax.Array] = l1_loss
  image: Callable[[Any], jax.Array] = lambda outputs: outputs


ARCHITECTURES = {
    'resnet': Architecture(ResNet),
}


def get(arch: str) -> Architecture:
  if arch not in ARCHITECTURES:
    raise ValueError(f'Unknown arch {arch!r}: choose one of {", ".join(ARCHITECTURES)}.')
  return ARCHITECTURES[arch]


def create(arch: str, hparams: dict, seed: int) -> nnx.Module:
  """A freshly initialised model of architecture `arch` (hparams: its keyword options)."""
  return get(arch).build(**hparams, rngs=nnx.Rngs(params=seed))


def num_params(model: nnx.Module) -> int:
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
