"""Architectures by name: one registry for the model, its loss and its output image.

`python -m jaxderain.models --arch=NAME` prints a JSON summary of one architecture.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
from clu import parameter_overview
from flax import nnx

from jaxderain.errors import ConfigError
from jaxderain.models import rcdnet
from jaxderain.models import spdnet, swinir
from jaxderain.models.resnet import ResNet
from jaxderain.models.unet import UNet


def l1_loss(outputs, rainy, clean):
  """Mean absolute error of the derained image against the clean background B."""
  del rainy
  return jnp.mean(jnp.abs(outputs - clean))


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One architecture, everything the train loop and eval need to know about it.

  build(**hparams, rngs) -> nnx.Module mapping (B, H, W, 3) rainy images O in [0, 1] to
    its outputs (the derained image, or a tuple such as several stages' estimates);
    state other than nnx.Param (e.g. BatchNorm statistics) is carried by the train loop.
  losses: name -> loss(outputs, rainy, clean) -> scalar; the first is the default.
  image(outputs) -> (B, H, W, 3): the derained image that eval scores.
  convert_torch(state_dict, model): loads an official PyTorch state_dict (numpy arrays)
    into the model in place (layouts: models/torch_layout.py), raising CheckpointError
    for one that does not fit; None where no official weights exist.
  """
  build: Callable[..., nnx.Module]
  losses: Mapping[str, Callable[..., jax.Array]] = dataclasses.field(
      default_factory=lambda: {'l1': l1_loss})
  image: Callable[[Any], jax.Array] = lambda outputs: outputs
  convert_torch: Callable[[dict, nnx.Module], None] | None = None

  def loss(self, name: str = ''):
    """The loss called `name` ('' = the default)."""
    if not name:
      return next(iter(self.losses.values()))
    if name not in self.losses:
      raise ConfigError(f'Unknown loss {name!r} for this architecture: choose one of '
                        f'{", ".join(self.losses)}.')
    return self.losses[name]


ARCHITECTURES = {
    'resnet': Architecture(ResNet),
    'unet': Architecture(UNet),
    'swinir': Architecture(swinir.SwinIR, convert_torch=swinir.convert_torch_state),
    'spdnet': Architecture(spdnet.SPDNet,
                           losses={'published': spdnet.published_loss, 'l1': spdnet.l1_loss},
                           image=spdnet.image,
                           convert_torch=spdnet.convert_torch_state),
    'rcdnet': Architecture(rcdnet.RCDNet,
                           losses={'published': rcdnet.published_loss, 'l1': rcdnet.l1_loss},
                           image=rcdnet.final_image,
                           convert_torch=rcdnet.convert_torch_state),
}


def get(arch: str) -> Architecture:
  if arch not in ARCHITECTURES:
    raise ConfigError(f'Unknown arch {arch!r}: choose one of {", ".join(ARCHITECTURES)}.')
  return ARCHITECTURES[arch]


def create(arch: str, hparams: dict, seed: int) -> nnx.Module:
  """A freshly initialised model of architecture `arch` (hparams: its keyword options)."""
  return get(arch).build(**hparams, rngs=nnx.Rngs(params=seed))


def _params(model) -> dict:
  """A module's parameters, or an nnx.State of them, as a nested dict."""
  state = nnx.state(model, nnx.Param) if isinstance(model, nnx.Module) else model
  return state.to_pure_dict()


def num_params(model) -> int:
  """The number of trainable parameters of a module or of an nnx.State of them (clu's
  parameter_overview)."""
  return int(parameter_overview.count_parameters(_params(model)))


def parameter_table(model: nnx.Module) -> str:
  """clu's table of every parameter: name, shape, dtype, size, mean and std."""
  return parameter_overview.get_parameter_overview(_params(model))
