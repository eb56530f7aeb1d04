"""Layers shared by the ports of PyTorch models (after BasicSR's archs/arch_util.py).

PyTorch's default initialisation of Conv2d, ConvTranspose2d and Linear: weight
kaiming_uniform_(a=sqrt(5)), i.e. U(+-gain * sqrt(3 / fan_in)) with gain sqrt(1 / 3), and
bias U(+-1 / sqrt(fan_in)): both U(+-1 / sqrt(fan_in)) (`torch_uniform`). Parameters are
float32 unless a param_dtype says otherwise, whatever jax_enable_x64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx


def torch_uniform(fan_in: int):
  """PyTorch's default weight and bias initialiser: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  fan_in: in_channels * kH * kW for Conv2d, out_channels * kH * kW for ConvTranspose2d
  (torch reads it from weight dim 1), in_features for Linear.
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_conv(in_features: int, out_features: int, kernel_size: int = 3, *,
               rngs: nnx.Rngs, padding='SAME', param_dtype=jnp.float32) -> nnx.Conv:
  """torch.nn.Conv2d(in, out, kernel_size, padding=kernel_size // 2 ('SAME') or 0
  ('VALID')) with its default init, as nnx.Conv (HWIO kernel, NHWC inputs)."""
  init = torch_uniform(kernel_size * kernel_size * in_features)
  return nnx.Conv(in_features, out_features, (kernel_size, kernel_size), padding=padding,
                  kernel_init=init, bias_init=init, param_dtype=param_dtype, rngs=rngs)
