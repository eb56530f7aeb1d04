"""The paper's ResNet family (after SRResNet): conv 3->C, residual blocks, conv C->3,
plus a global skip, so the body predicts the negative rain layer: out = O + body(O)."""

from __future__ import annotations

import jax
from flax import nnx


class ResidualBlock(nnx.Module):
  """conv3x3 - ReLU - conv3x3 with an identity skip; no normalisation."""

  def __init__(self, features: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(features, features, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(features, features, (3, 3), rngs=rngs)

  def __call__(self, x):
    return x + self.conv2(jax.nn.relu(self.conv1(x)))


class ResNet(nnx.Module):
  """(B, H, W, 3) rainy images in [0, 1] -> (B, H, W, 3) derained estimates (unclipped)."""

  def __init__(self, features: int = 64, num_blocks: int = 16, *, rngs: nnx.Rngs):
    self.head = nnx.Conv(3, features, (3, 3), rngs=rngs)
    self.blocks = nnx.List([ResidualBlock(features, rngs=rngs) for _ in range(num_blocks)])
    self.tail = nnx.Conv(features, 3, (3, 3), rngs=rngs)

  def __call__(self, x):
    h = self.head(x)
    for block in self.blocks:
      h = block(h)
    return x + self.tail(h)
