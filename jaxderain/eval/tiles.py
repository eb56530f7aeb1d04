"""Running a model over an image of any size in overlapping tiles, with bounded memory.

The image is padded (reflected) to at least one tile, cut into T x T tiles that overlap by
`overlap` pixels, run a few tiles at a time, and blended back with weights that ramp
linearly across each overlap, so no seam shows and every tile has the same shape (one
compilation, and shapes every architecture accepts when T is a multiple of its stride).

Tiles are read from the image one at a time and run row of tiles after row of tiles; the
blend sums cover one band (T rows x the padded width), and its rows are handed on as soon
as no later tile touches them, so nothing image-sized is made in float32.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

# read_box(top, left, bottom, right) -> float32 (bottom - top, right - left, 3): a box
# inside the image.
ReadBox = Callable[[int, int, int, int], np.ndarray]
Predict = Callable[[np.ndarray], np.ndarray]
PIECE_ROWS = 32  # finished rows are handed on at most this many at a time


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


def predict_bands(predict: Predict, read_box: ReadBox, height: int, width: int,
                  tile: int = 256, overlap: int = 32, batch_size: int = 4,
                  on_tiles: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
  """`predict` ((B, T, T, 3) float32 -> same) over a (height, width) image in tiles.

  Yields the output top to bottom in float32 (rows <= PIECE_ROWS, width, 3) pieces,
  `height` rows in all, each as soon as no later tile touches its rows. Memory: the
  batch_size tiles, one piece, and the float32 sums of one (tile, max(width, tile)) band.
  on_tiles(k) is called after every batch of k tiles (for a progress bar)."""
  starts = tile_starts(max(height, tile), tile, overlap)
  corners = [(r, c) for r in starts for c in tile_starts(max(width, tile), tile, overlap)]
  band = _BandSums(tile, max(width, tile), blend_weights(tile, overlap))
  read_tile = lambda r, c: _pad_to(read_box(r, c, min(r + tile, height),
                                            min(c + tile, width)), tile)
  top = 0
  for (r, c), output in _tile_outputs(predict, read_tile, corners, batch_size, on_tiles):
    if r != top:  # the first tile of the next row: no later tile touches rows above it
      yield from _rows_inside(band.take(r - top), top, height, width)
      top = r
    band.add(c, output)
  yield from _rows_inside(band.take(tile), top, height, width)


def predict_tiled(predict: Predict, image: np.ndarray, tile: int = 256, overlap: int = 32,
                  batch_size: int = 4,
                  on_tiles: Callable[[int], None] | None = None) -> np.ndarray:
  """predict_bands over an in-memory (H, W, 3) float image; returns the (H, W, 3) float32
  output (memory beyond the image and the output: as predict_bands)."""
  height, width = image.shape[:2]
  read_box = lambda top, left, bottom, right: np.asarray(image[top:bottom, left:right],
                                                         np.float32)
  output = np.empty((height, width, 3), np.float32)
  row = 0
  for piece in predict_bands(predict, read_box, height, width, tile, overlap, batch_size,
                             on_tiles):
    output[row:row + len(piece)] = piece
    row += len(piece)
  return output


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
  """How many tiles predict_bands runs for a (height, width) image."""
  return (len(tile_starts(max(height, tile), tile, overlap)) *
          len(tile_starts(max(width, tile), tile, overlap)))


class _BandSums:
  """Blend sums of one band of tiles, W the padded width: weighted outputs float32
  (T, W, 3) and weights float32 (T, W, 1)."""

  def __init__(self, tile: int, width: int, weights: np.ndarray):
    self.weights = weights[..., None]
    self.total = np.zeros((tile, width, 3), np.float32)
    self.weight_sum = np.zeros((tile, width, 1), np.float32)

  def add(self, left: int, output: np.ndarray) -> None:
    """Blend in a (T, T, 3) tile output whose left edge is column `left`."""
    tile = len(self.weights)
    self.total[:, left:left + tile] += output * self.weights
    self.weight_sum[:, left:left + tile] += self.weights

  def take(self, rows: int) -> Iterator[np.ndarray]:
    """The blended top `rows` rows in float32 (<= PIECE_ROWS, W, 3) pieces; then the rest
    of the band moves up, and zeros fill its bottom."""
    for start in range(0, rows, PIECE_ROWS):
      stop = min(start + PIECE_ROWS, rows)
      yield self.total[start:stop] / self.weight_sum[start:stop]
    for sums in (self.total, self.weight_sum):
      sums[:len(sums) - rows] = sums[rows:]
      sums[len(sums) - rows:] = 0


def _tile_outputs(predict: Predict, read_tile: Callable[[int, int], np.ndarray],
                  corners: list[tuple[int, int]], batch_size: int,
                  on_tiles: Callable[[int], None] | None) -> Iterator[tuple]:
  """((row, col), float32 (T, T, 3) output) per corner, in order, batch_size tiles per
  call (the last batch filled with repeats: one shape, one compilation)."""
  for start in range(0, len(corners), batch_size):
    chunk = corners[start:start + batch_size]
    tiles = np.stack([read_tile(r, c) for r, c in chunk])
    if len(chunk) < batch_size:
      tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch_size - len(chunk), 0)])
    outputs = np.asarray(predict(tiles))
    yield from zip(chunk, outputs)
    if on_tiles:
      on_tiles(len(chunk))


def _rows_inside(pieces: Iterator[np.ndarray], top: int, height: int,
                 width: int) -> Iterator[np.ndarray]:
  """The parts inside the (height, width) image of consecutive pieces of padded rows, the
  first starting at row `top` (nothing for a piece that is all padding)."""
  for piece in pieces:
    inside = piece[:max(min(len(piece), height - top), 0), :width]
    top += len(piece)
    if len(inside):
      yield inside


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
  """Pad the bottom and right edges up to `size` (reflecting, or repeating the edge
  where the image is too small to reflect)."""
  pad_h, pad_w = max(size - image.shape[0], 0), max(size - image.shape[1], 0)
  if not (pad_h or pad_w):
    return image
  mode = 'reflect' if pad_h < image.shape[0] and pad_w < image.shape[1] else 'edge'
  return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
