"""Measured statistics of rain layers (host-side numpy): how much rain, which angle, how long.

Used to check generated rain against Table 1, to compare training and test rain, and to
describe real rain layers (e.g. Rain100L's rainy - clean). A layer is (H, W) or (H, W, C)
in [0, 1]; channels are averaged.
"""

from __future__ import annotations

import numpy as np


def _plane(layer) -> np.ndarray:
  layer = np.asarray(layer, np.float64)
  return layer.mean(axis=-1) if layer.ndim == 3 else layer


def autocorrelation(layer, blur: float = 1.0) -> np.ndarray:
  """Normalised circular autocorrelation (1 at zero lag), zero lag at the centre, of the
  layer blurred by a Gaussian of sigma `blur` pixels (so one-pixel-wide diagonal streaks
  do not decorrelate on the pixel grid's staircase)."""
  plane = _plane(layer)
  centred = plane - plane.mean()
  fy = np.fft.fftfreq(plane.shape[0])[:, None]
  fx = np.fft.rfftfreq(plane.shape[1])[None, :]
  gain = np.exp(-(2 * np.pi * blur) ** 2 * (fy ** 2 + fx ** 2))
  power = (np.abs(np.fft.rfft2(centred)) * gain) ** 2
  auto = np.fft.irfft2(power, s=plane.shape)
  return np.fft.fftshift(auto / max(auto[0, 0], 1e-12))


def streak_angle(layer) -> float:
  """Dominant streak angle in degrees from vertical (positive = leaning right at the top):
  the principal axis of the autocorrelation's central lobe (values above 0.5)."""
  auto = autocorrelation(layer)
  rows, cols = np.nonzero(auto > 0.5)
  dy, dx = rows - auto.shape[0] // 2, cols - auto.shape[1] // 2
  weight = auto[rows, cols]
  cxx, cyy, cxy = (weight * dx * dx).sum(), (weight * dy * dy).sum(), (weight * dx * dy).sum()
  return float(0.5 * np.degrees(np.arctan2(-2 * cxy, cyy - cxx)))


def streak_length(layer, angle: float | None = None) -> float:
  """Typical streak length in pixels: twice the lag at which the autocorrelation along the
  streak direction falls to one half (a streak of length L correlates with itself as a
  triangle of half-width L, which is one half at lag L / 2)."""
  auto = autocorrelation(layer)
  theta = np.radians(streak_angle(layer) if angle is None else angle)
  centre = np.array(auto.shape) // 2
  lags = np.arange(0.0, min(auto.shape) // 2, 0.25)
  rows = centre[0] - lags * np.cos(theta)
  cols = centre[1] + lags * np.sin(theta)
  profile = _bilinear(auto, rows, cols)
  below = np.nonzero(profile < 0.5)[0]
  return float(2 * lags[below[0]]) if below.size else float(2 * lags[-1])


def _bilinear(image, rows, cols):
  r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
  fr, fc = rows - r0, cols - c0
  h, w = image.shape
  at = lambda r, c: image[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
  return ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1) +
          fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))


def summary(layers) -> dict:
  """Mean, coverage (share of pixels above 0.1), and per-layer angles and lengths of a
  sequence of layers."""
  planes = [_plane(x) for x in layers]
  angles = [streak_angle(p) for p in planes]
  return {
      'mean': float(np.mean([p.mean() for p in planes])),
      'coverage': float(np.mean([(p > 0.1).mean() for p in planes])),
      'angles': angles,
      'lengths': [streak_length(p, a) for p, a in zip(planes, angles)],
  }


# Per-streak shapes: each connected blob of the thresholded layer is one streak.
SHAPE_AXES = ('angle', 'length', 'width')
STREAK_THRESHOLD = 0.1  # rain pixels of a streak (the coverage threshold of `summary`)
MIN_STREAK_PIXELS = 8  # smaller blobs are noise or the tips of faint streaks


def streak_shapes(layer, threshold: float = STREAK_THRESHOLD,
                  min_pixels: int = MIN_STREAK_PIXELS) -> np.ndarray:
  """(K, 3) float: angle (degrees from vertical, positive leaning right at the top, in
  (-90, 90]), length and width (px) of each streak of one layer. A streak is a connected
  blob (8-neighbours) of pixels above `threshold`; its shape comes from the
  intensity-weighted second moments: a bar of length L and width W has variances L^2/12
  along and W^2/12 across, so L = sqrt(12 var_along), W = sqrt(12 var_across)."""
  import scipy.ndimage  # pylint: disable=g-import-not-at-top (host-side only)
  plane = _plane(layer)
  labels, count = scipy.ndimage.label(plane > threshold, structure=np.ones((3, 3)))
  if not count:
    return np.zeros((0, 3))
  rows, cols = np.nonzero(labels)
  blob = labels[rows, cols] - 1
  weight = plane[rows, cols]
  total = np.bincount(blob, weight, count)
  pixels = np.bincount(blob, minlength=count)
  mean_r = np.bincount(blob, weight * rows, count) / total
  mean_c = np.bincount(blob, weight * cols, count) / total
  dr, dc = rows - mean_r[blob], cols - mean_c[blob]
  crr = np.bincount(blob, weight * dr * dr, count) / total
  ccc = np.bincount(blob, weight * dc * dc, count) / total
  crc = np.bincount(blob, weight * dr * dc, count) / total
  half_trace, det = (crr + ccc) / 2, crr * ccc - crc ** 2
  root = np.sqrt(np.maximum(half_trace ** 2 - det, 0))
  along, across = half_trace + root, np.maximum(half_trace - root, 0)
  # The major axis (dr, dc) solves (crr - along) dr + crc dc = 0; rows grow downwards, so
  # a streak leaning right at the top runs along (-cos, sin) of its angle.
  angle = np.degrees(np.arctan2(crr - along, crc))  # direction of (dc, -dr) from vertical
  angle = np.where(angle > 90, angle - 180, np.where(angle <= -90, angle + 180, angle))
  shapes = np.stack([angle, np.sqrt(12 * along), np.sqrt(12 * across)], axis=1)
  return shapes[pixels >= min_pixels]


def measured_range(training_shapes: np.ndarray, share: float = 0.98) -> np.ndarray:
  """(3, 2) bounds per SHAPE_AXES of the central `share` of a training rain's measured
  streaks: the range as the measurement sees it (measurement noise included)."""
  tail = (1 - share) / 2
  return np.quantile(training_shapes, [tail, 1 - tail], axis=0).T


def share_outside(shapes: np.ndarray, bounds: np.ndarray) -> dict[str, float]:
  """Share of streaks outside `bounds` (measured_range) on each axis and on any axis."""
  outside = (shapes < bounds[:, 0]) | (shapes > bounds[:, 1])
  shares = {axis: float(outside[:, i].mean()) for i, axis in enumerate(SHAPE_AXES)}
  return {**shares, 'any': float(outside.any(axis=1).mean())}
