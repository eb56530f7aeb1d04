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

A category's complexity is measured on fixed background patches of its training images
(`category_complexity`, used by the `complexity` command); a study's report caches it per
category in OUT/complexity.json (`cached_category_stats`), so it rebuilds without images.
"""

from __future__ import annotations

import functools
import json
import logging

import jax
import jax.numpy as jnp
import numpy as np

from jaxderain.data.backgrounds import background_set, load_category
from jaxderain.study.folders import StudyFolder
from jaxderain.study.results import read_json



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


def category_complexity(category: str, data_dir: str | None = None, num_patches: int = 256,
                        patch_size: int = 64) -> np.ndarray:
  """Complexity of a category's fixed (seed 0) background patches: (num_patches,)."""
  images = load_category(category, data_dir or None).train
  patches = background_set(images, num_patches, patch_size, 0)
  return np.asarray(complexity(patches.astype(np.float32) / 255.0))


def cached_category_stats(out_dir, sources: dict[str, tuple[str, str | None]]
                          ) -> tuple[dict[str, dict], dict[str, str]]:
  """({name: mean, std, patches}, {name: why it was skipped}) for every category of
  `sources` ({name: (category, data_dir)}) and those cached before. Read from and added
  to OUT/complexity.json, so a category measured once needs no images again."""
  cache_file = StudyFolder(out_dir).complexity_file
  stats = read_json(cache_file) if cache_file.is_file() else {}
  skipped = {}
  for name, (category, data_dir) in sorted(sources.items()):
    if name in stats:
      continue
    try:
      values = category_complexity(category, data_dir)
    except (ValueError, OSError) as error:  # ImageError is a ValueError
      logging.warning('Complexity: skipping category %s: %s', name, error)
      skipped[name] = str(error)
      continue
    stats[name] = {'mean': float(values.mean()), 'std': float(values.std()),
                   'patches': len(values)}
  if stats:
    cache_file.write_text(json.dumps(stats, indent=1, sort_keys=True))
  return stats, skipped
