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
