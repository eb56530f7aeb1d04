"""Running a model over an image of any size in overlapping tiles, with bounded memory.

The image is padded (reflected) to at least one tile, cut into T x T tiles that overlap by
`overlap` pixels, run a few tiles at a time, and blended back with weights that ramp
linearly across each overlap, so no seam shows and every tile has the same shape (one
compilation, and shapes every architecture accepts when T is a multiple of its stride).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of size `tile` covering [0, length) (length >= tile), each
  overlapping the next by at least `overlap`; the last ends exactly at `length`."""
  if not 0 <= overlap < tile:
    raise ValueError(f'overlap must be in [0, tile), got overlap={overlap}, tile={tile}.')
  stride = tile - overlap
  starts = list(range(0, max(length - tile, 0) + 1, stride))
  if starts[-1] + tile < length:
    starts.append(length - tile)
  return starts


def blend_weights(tile: int, overlap: int) -> np.ndarray:
  """(tile, tile) float32 weights: 1 inside, ramping down linearly over `overlap` pixels
  at every edge (never 0, so image borders, covered by one tile, keep their value)."""
  ramp = np.ones(tile, np.float32)
  if overlap:
    edge = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    ramp[:overlap], ramp[tile - overlap:] = edge, edge[::-1]
  return np.outer(ramp, ramp)


def predict_tiled(predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  tile: int = 256, overlap: int = 32, batch_size: int = 4,
                  on_tiles: Callable[[int], None] | None = None) -> np.ndarray:
  """`predict` ((B, T, T, 3) float32 -> same) over a (H, W, 3) float32 image in tiles.

  Memory beyond the image is batch_size tiles plus two float32 (H, W) accumulators.
  on_tiles(k) is called after every batch of k tiles (for a progress bar).
  Returns the (H, W, 3) float32 output."""
  height, width = image.shape[:2]
  padded = _pad_to(image, tile)
  rows = tile_starts(padded.shape[0], tile, overlap)
  cols = tile_starts(padded.shape[1], tile, overlap)
  weights = blend_weights(tile, overlap)[..., None]
  total = np.zeros(padded.shape, np.float32)
  weight_sum = np.zeros(padded.shape[:2] + (1,), np.float32)
  corners = [(r, c) for r in rows for c in cols]
  for start in range(0, len(corners), batch_size):
    chunk = corners[start:start + batch_size]
    tiles = np.stack([padded[r:r + tile, c:c + tile] for r, c in chunk])
    if len(chunk) < batch_size:  # keep one shape: one compilation
      tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(chunk), 0)])
    outputs = np.asarray(predict(tiles))
    for (r, c), out in zip(chunk, outputs):
      total[r:r + tile, c:c + tile] += out * weights
      weight_sum[r:r + tile, c:c + tile] += weights
    if on_tiles:
      on_tiles(len(chunk))
  return (total / weight_sum)[:height, :width]


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
  """How many tiles predict_tiled runs for a (height, width) image."""
  return (len(tile_starts(max(height, tile), tile, overlap)) *
          len(tile_starts(max(width, tile), tile, overlap)))


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
  """Pad the bottom and right edges up to `size` (reflecting, or repeating the edge
  where the image is too small to reflect)."""
  pad_h, pad_w = max(size - image.shape[0], 0), max(size - image.shape[1], 0)
  if not (pad_h or pad_w):
    return image
  mode = 'reflect' if pad_h < image.shape[0] and pad_w < image.shape[1] else 'edge'
  return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
