"""The paper's encoder-decoder family: a restoration U-Net with a global skip.

Choices (after Ronneberger et al. 2015, adapted to restoration):
  * `num_scales` resolutions (default 4: 1, 1/2, 1/4, 1/8), widths C, 2C, 4C, 8C with
    C = `features` (64 for the paper scale; 32 is the usual lighter variant).
  * Each level: two conv3x3 + ReLU, no normalisation (as the ResNet family).
  * Down: 2x2 max pooling (parameter-free). Up: 2x2 transposed conv with stride 2 from
    2w to w channels; skips join by concatenation [encoder, upsampled] before the
    level's two convs.
  * Tail: conv3x3 C -> 3, no activation; global residual: out = O + net(O).
  * Any input size: reflect-pad bottom/right to a multiple of the total stride
    2**(num_scales - 1) (8 for 4 scales), crop back to the input size.

Parameters, with conv(a, b) = 9ab + b, up(a, b) = 4ab + b and w_s = C 2**s:
  conv(3, C) + conv(C, C) + sum_{s=1}^{S-1} [conv(w_{s-1}, w_s) + conv(w_s, w_s)]
  + sum_{s=0}^{S-2} [up(w_{s+1}, w_s) + conv(2 w_s, w_s) + conv(w_s, w_s)] + conv(C, 3);
  7,699,011 for C = 64, S = 4 and 1,926,435 for C = 32, S = 4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBlock(nnx.Module):
  """conv3x3 - ReLU - conv3x3 - ReLU: (B, H, W, in_features) -> (B, H, W, out_features)."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_features, out_features, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(out_features, out_features, (3, 3), rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))


class UNet(nnx.Module):
  """(B, H, W, 3) rainy images in [0, 1] -> (B, H, W, 3) derained estimates (unclipped)."""

  def __init__(self, features: int = 64, num_scales: int = 4, *, rngs: nnx.Rngs):
    if num_scales < 1:
      raise ValueError(f'num_scales must be at least 1, got {num_scales}.')
    widths = [features * 2**scale for scale in range(num_scales)]
    # encoder[s] works at 1 / 2**s of the input size; the last one is the bottleneck.
    self.encoder = nnx.List([
        ConvBlock(3 if scale == 0 else widths[scale - 1], widths[scale], rngs=rngs)
        for scale in range(num_scales)])
    # upsample[s]: scale s + 1 -> s; decoder[s] fuses it with encoder[s]'s output.
    self.upsample = nnx.List([
        nnx.ConvTranspose(widths[scale + 1], widths[scale], (2, 2), strides=(2, 2),
                          padding='VALID', rngs=rngs)
        for scale in range(num_scales - 1)])
    self.decoder = nnx.List([ConvBlock(2 * widths[scale], widths[scale], rngs=rngs)
                             for scale in range(num_scales - 1)])
    self.tail = nnx.Conv(features, 3, (3, 3), rngs=rngs)
    self.stride = 2**(num_scales - 1)

  def __call__(self, x):
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (0, -height % self.stride), (0, -width % self.stride),
                         (0, 0)), mode='reflect')
    skips = []
    h = padded
    for scale, block in enumerate(self.encoder):
      if scale:
        h = nnx.max_pool(h, (2, 2), strides=(2, 2))
      h = block(h)
      skips.append(h)
    for scale in reversed(range(len(self.decoder))):
      h = self.upsample[scale](h)
      h = self.decoder[scale](jnp.concatenate([skips[scale], h], axis=-1))
    return (padded + self.tail(h))[:, :height, :width]
