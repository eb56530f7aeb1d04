"""Image metrics on the 0-255 scale, in float64 on the host.

- E_R, E_B: the paper's decoupled errors (section 2.2). With the network output O~, the
  rainy input O, the clean background B and the rain mask M = R > t:
  E_R = sqrt(mean_{M} (O~ - O)^2), how much the network changed the rainy pixels (higher
  is more rain removed); E_B = sqrt(mean_{not M} (O~ - B)^2), the background error (lower
  is better). Means run over pixels and RGB channels of one image.
- removal_share: the least-squares share of the rain that was removed; it rewards
  over-subtraction (an output darker than B scores above 1).
- net_removal: the damage-robust share the study's verdicts use,
  1 - sum_M |O~ - B| / sum_M (O - B): 1 for the perfect output, 0 for the identity, and
  any pixel pushed further from B (over-subtraction below B, or rain added) lowers it;
  negative when the output is further from B on the rain pixels than the input was.
- over_subtraction: sum_M max(B - O~, 0) / sum_M (O - B), how far the output went below
  the clean image on rain pixels, in units of the rain (damage, not removal).
- PSNR and SSIM on the Y channel (ITU-R BT.601, 16-235, as BasicSR and the deraining
  literature compute it): SSIM with an 11x11 Gaussian window (sigma 1.5) over the valid
  region, population covariances, K1 = 0.01, K2 = 0.03.
Inputs: float arrays (H, W, 3) in [0, 1]; masks (H, W, 1) bool.
"""

from __future__ import annotations

import numpy as np

# The per-set scores averaged over recent checkpoints and read by the study's report.
METRIC_KEYS = ('E_R', 'E_B', 'psnr', 'ssim', 'removal_share', 'net_removal',
               'over_subtraction')

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def rgb_to_y(image: np.ndarray) -> np.ndarray:
  """BT.601 luma on the 0-255 scale (16-235) of an RGB image in [0, 1]: (..., 3) -> (...)."""
  return np.asarray(image, np.float64) @ _Y_WEIGHTS + 16.0


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float('inf') if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


# SSIM's Gaussian window, pixels a side (sigma 1.5): a test image's sides need at least
# this many (configs/grid.py bounds eval.image_size by it).
SSIM_WINDOW = 11


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = 1.5) -> np.ndarray:
  x = np.arange(size) - size // 2
  w = np.exp(-x ** 2 / (2 * sigma ** 2))
  return w / w.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Separable correlation of a 2-D image with `window`, keeping the valid region."""
  k = len(window)
  rows = np.lib.stride_tricks.sliding_window_view(image, k, axis=0) @ window
  return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ window


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
  """Mean SSIM (Wang et al. 2004) of two 2-D images."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  window = _gaussian_window()
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
  var_a = _filter_valid(a * a, window) - mu_a ** 2
  var_b = _filter_valid(b * b, window) - mu_b ** 2
  cov = _filter_valid(a * b, window) - mu_a * mu_b
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2) /
              ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
  return float(ssim_map.mean())


def psnr_y(output: np.ndarray, clean: np.ndarray) -> float:
  return psnr(rgb_to_y(output), rgb_to_y(clean))


def ssim_y(output: np.ndarray, clean: np.ndarray) -> float:
  return ssim(rgb_to_y(output), rgb_to_y(clean))


def decoupled_errors(output, rainy, clean, mask) -> tuple[float, float]:
  """(E_R, E_B) on the 0-255 scale; NaN where the mask (or its complement) is empty."""
  output, rainy, clean = (np.asarray(x, np.float64) * 255.0 for x in (output, rainy, clean))
  mask = np.broadcast_to(np.asarray(mask, bool), output.shape)

  def rms(diff, where):
    return float(np.sqrt(np.mean(diff[where] ** 2))) if where.any() else float('nan')

  return rms(output - rainy, mask), rms(output - clean, ~mask)


def removal_share(output, rainy, clean, mask) -> float:
  """Least-squares share of the rain that the model removed, over rain pixels:
  sum((O - O~) (O - B)) / sum((O - B)^2), with O - B the rain as it reached the image
  (R after clipping). 1 = all rain removed, 0 = none; robust to damage elsewhere."""
  output, rainy, clean = (np.asarray(x, np.float64) for x in (output, rainy, clean))
  mask = np.broadcast_to(np.asarray(mask, bool), output.shape)
  removed, rain_layer = (rainy - output)[mask], (rainy - clean)[mask]
  denominator = np.sum(rain_layer ** 2)
  return float(np.sum(removed * rain_layer) / denominator) if denominator else float('nan')


def _on_rain(output, rainy, clean, mask):
  """(O~ - B, O - B) over the rain pixels (all channels), float64 in [0, 1] units."""
  output, rainy, clean = (np.asarray(x, np.float64) for x in (output, rainy, clean))
  mask = np.broadcast_to(np.asarray(mask, bool), output.shape)
  return (output - clean)[mask], (rainy - clean)[mask]


def net_removal(output, rainy, clean, mask) -> float:
  """1 - sum_M |O~ - B| / sum_M (O - B): the share of the rain-pixel error removed, net
  of damage (see the module docstring); NaN without rain on the mask."""
  residual, rain_layer = _on_rain(output, rainy, clean, mask)
  total = np.sum(np.abs(rain_layer))
  return float(1.0 - np.sum(np.abs(residual)) / total) if total else float('nan')


def over_subtraction(output, rainy, clean, mask) -> float:
  """sum_M max(B - O~, 0) / sum_M (O - B): output below the clean image on rain pixels,
  in units of the rain; 0 when it never goes below B. NaN without rain on the mask."""
  residual, rain_layer = _on_rain(output, rainy, clean, mask)
  total = np.sum(np.abs(rain_layer))
  return float(np.sum(np.maximum(-residual, 0.0)) / total) if total else float('nan')
