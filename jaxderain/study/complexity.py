"""Multiscale structural complexity (Bagrov et al., PNAS 2020), the paper's Figure 6b.

An image f is coarse-grained by averaging blocks of lambda^k pixels (lambda = 2) and
broadcasting back to full size, giving f_k (f_0 = f). With the overlap
O(a, b) = mean over pixels of a . b (dot product over RGB),

  C_k = | O(f_k, f_{k+1}) - (O(f_k, f_k) + O(f_{k+1}, f_{k+1})) / 2 |,

and the complexity is the sum of C_k over the scales k = 0 .. K - 1, where 2^K is the
largest block that fits the image (the image is cropped to a multiple of 2^K).
Images are float in [0, 1]; the result is in those units squared. A constant image has
complexity 0, and adding a constant to every pixel leaves it unchanged (block averages
keep the mean).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _block_average(images, block: int):
  """(B, H, W, C) -> the block means broadcast back to (B, H, W, C)."""
  b, h, w, c = images.shape
  means = images.reshape(b, h // block, block, w // block, block, c).mean(axis=(2, 4))
  return jnp.repeat(jnp.repeat(means, block, axis=1), block, axis=2)


def _overlap(a, b):
  return jnp.mean(jnp.sum(a * b, axis=-1), axis=(1, 2))


@functools.partial(jax.jit, static_argnames='num_scales')
def scale_terms(images, num_scales: int):
  """C_k for k = 0 .. num_scales - 1: (B, H, W, C) -> (B, num_scales).

  H and W must be multiples of 2^num_scales."""
  images = images.astype(jnp.float32)
  terms, fine = [], images
  for k in range(num_scales):
    coarse = _block_average(images, 2 ** (k + 1))
    terms.append(jnp.abs(_overlap(fine, coarse) -
                         0.5 * (_overlap(fine, fine) + _overlap(coarse, coarse))))
    fine = coarse
  return jnp.stack(terms, axis=1)


def complexity(images, num_scales: int | None = None):
  """Structural complexity per image: (B, H, W, C) in [0, 1] -> (B,).

  num_scales defaults to every scale whose block fits the image's shorter side."""
  height, width = images.shape[1:3]
  if num_scales is None:
    num_scales = max(1, min(height, width).bit_length() - 1)
  block = 2 ** num_scales
  if min(height, width) < block:
    raise ValueError(f'{num_scales} scales need images of at least {block} pixels, got '
                     f'{height}x{width}.')
  cropped = images[:, :height - height % block, :width - width % block]
  return scale_terms(cropped, num_scales).sum(axis=1)
