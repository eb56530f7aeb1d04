"""Rain layers R of the linear model O = clip(B + R, 0, 1), synthesised on the device.

The recipe is the classic Photoshop rain, written for `jax.random` and batched with
per-image parameters (no Python loop over images, no host round trip):

1. Sparse noise: u ~ U[0, 256) per pixel; values below 256 - 0.01 q are set to 0, so about
   q / 25600 of the pixels survive (q is Table 1's "quantity").
2. The noise is filtered with the recipe's 3x3 kernel [[0, .1, 0], [.1, 8, .1], [0, .1, 0]].
3. Motion blur along a streak kernel: a line of length L at angle theta (0 = vertical,
   positive = leaning right at the top) blurred by a Gaussian of odd width w.
4. Normalise to [0, 1] (per image min-max), then the Levels step
   R = clip((R - black) / (white - black), 0, 1), which turns the blurred noise into
   streaks on black. Min-max alone gives a haze that networks learn to darken away.

Choices the recipe leaves open, made here:
- The streak kernel is the exact continuous form of "a one-pixel line blurred by a
  Gaussian": exp(-p^2 / 2 s^2) * [Phi((L/2 - a) / s) - Phi((-L/2 - a) / s)] with a along
  the streak and p across it, s the OpenCV sigma of a width-w Gaussian,
  0.3 ((w - 1) / 2 - 1) + 0.8 (0.5 for w = 1, an anti-aliased line). It is normalised to
  unit sum, so q alone sets density.
- Levels (black, white) = (0.4, 1.0), chosen once by a rule: the highest black point on a
  0.1 grid that leaves every Table 1 range at least Rain100L's coverage (7.0% of pixels
  above 0.1; its mean is 0.022). Measured at 128x128 (64 layers, `rain.stats`):
  small mean 0.025 / coverage 7.8%, medium 0.029 / 8.9%, large 0.027 / 8.2%; at black
  0.5 coverage falls to 4-5%, at 0.3 it is 14-18% (`tests/test_rain.py` checks the rule).
- Convolutions are circular FFT products on the patch grid: the rain field is stationary
  (no dark borders where a streak would leave the patch) and the cost does not grow with
  L. Streaks longer than the patch wrap; lengths are capped at the patch's smaller side.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class RainRange:
  """Ranges of the per-image rain parameters (Table 1); sampled uniformly per image.

  quantity: q, the noise density control (about q / 25600 of pixels seed a streak).
  widths: odd Gaussian widths w in pixels, one picked per image.
  length: streak length L in pixels.
  angle: theta in degrees from vertical. With `mirrored`, |theta| is drawn from `angle`
    and its sign is random (for ranges that exclude vertical rain).
  levels: the Levels step's (black, white) points on the normalised layer.
  """
  quantity: tuple[float, float]
  widths: tuple[int, ...]
  length: tuple[float, float]
  angle: tuple[float, float]
  mirrored: bool = False
  levels: tuple[float, float] = (0.4, 1.0)

  def __post_init__(self):
    if not self.widths or any(w < 1 or w % 2 == 0 for w in self.widths):
      raise ValueError(f'Rain widths must be odd positive integers, got {self.widths}.')
    for name in ('quantity', 'length', 'angle', 'levels'):
      low, high = getattr(self, name)
      if low > high:
        raise ValueError(f'Rain {name} range must be (low, high) with low <= high, '
                         f'got {(low, high)}.')
    if not 0 <= self.levels[0] < self.levels[1] <= 1:
      raise ValueError(f'Rain levels must satisfy 0 <= black < white <= 1, got {self.levels}.')


# Table 1 of the paper: the training rain ranges.
TRAINING_RANGES = {
    'small': RainRange(quantity=(200, 300), widths=(5,), length=(30, 31), angle=(-5, 5)),
    'medium': RainRange(quantity=(200, 300), widths=(5, 7, 9), length=(20, 40),
                        angle=(-30, 30)),
    'large': RainRange(quantity=(200, 300), widths=(1, 3, 5, 7, 9), length=(5, 60),
                       angle=(-70, 70)),
}
RAIN_RANGES = tuple(TRAINING_RANGES)  # the range names, in Table 1's order

# Test rain that no training range produces in its shape statistics: thin, short
# streaks at 35-60 degrees from vertical, either side.
UNSEEN_RANGE = RainRange(quantity=(300, 400), widths=(1, 3), length=(8, 18),
                         angle=(35, 60), mirrored=True, levels=(0.2, 0.9))

_NOISE_FILTER = ((0.0, 0.1, 0.0), (0.1, 8.0, 0.1), (0.0, 0.1, 0.0))


def _gaussian_sigma(width):
  """OpenCV's sigma for a Gaussian kernel of odd size `width`."""
  return jnp.maximum(0.3 * ((width - 1) * 0.5 - 1) + 0.8, 0.5)


def _torus_offsets(height, width):
  """Signed pixel offsets (dy, dx) from the origin on a periodic H x W grid."""
  dy = (jnp.arange(height) + height // 2) % height - height // 2
  dx = (jnp.arange(width) + width // 2) % width - width // 2
  return jnp.meshgrid(dy.astype(jnp.float32), dx.astype(jnp.float32), indexing='ij')


def streak_kernels(height, width, length, angle, sigma):
  """Unit-sum streak kernels on the periodic grid, centred on pixel (0, 0).

  length, angle (radians from vertical), sigma: (B,) arrays. Returns (B, H, W) float32.
  """
  dy, dx = _torus_offsets(height, width)
  cos, sin = jnp.cos(angle)[:, None, None], jnp.sin(angle)[:, None, None]
  along = -dy * cos + dx * sin  # image rows grow downwards; theta > 0 leans right at top
  across = dy * sin + dx * cos
  s = sigma[:, None, None]
  half = length[:, None, None] / 2
  kernel = (jnp.exp(-0.5 * (across / s) ** 2) *
            (jax.scipy.special.ndtr((half - along) / s) -
             jax.scipy.special.ndtr((-half - along) / s)))
  return kernel / jnp.sum(kernel, axis=(1, 2), keepdims=True)


def _noise_filter_spectrum(height, width):
  filt = jnp.zeros((height, width), jnp.float32)
  for i, row in enumerate(_NOISE_FILTER):
    for j, value in enumerate(row):
      filt = filt.at[(i - 1) % height, (j - 1) % width].set(value)
  return jnp.fft.rfft2(filt)


def _uniform(key, shape, bounds):
  return jax.random.uniform(key, shape, minval=bounds[0], maxval=bounds[1])


def synthesize(key, batch_size, height, width, rain_range):
  """Rain layers R, float32 (batch_size, height, width, 1) in [0, 1].

  key: a `jax.random` key; the same key gives the same rain. rain_range: a name of
  TRAINING_RANGES ('small', 'medium', 'large') or a RainRange.
  Pure and jit-friendly (batch_size, height, width and rain_range are static).
  """
  if isinstance(rain_range, str):
    rain_range = TRAINING_RANGES[rain_range]
  shape = (batch_size,)
  k_q, k_w, k_len, k_ang, k_sign, k_noise = jax.random.split(key, 6)
  quantity = _uniform(k_q, shape, rain_range.quantity)
  widths = jax.random.choice(k_w, jnp.asarray(rain_range.widths, jnp.float32), shape)
  length = jnp.minimum(_uniform(k_len, shape, rain_range.length), min(height, width) - 1)
  angle = jnp.deg2rad(_uniform(k_ang, shape, rain_range.angle))
  if rain_range.mirrored:
    angle = angle * jax.random.rademacher(k_sign, shape, jnp.float32)

  noise = jax.random.uniform(k_noise, (batch_size, height, width), maxval=256.0)
  noise = jnp.where(noise >= 256.0 - 0.01 * quantity[:, None, None], noise, 0.0)

  kernels = streak_kernels(height, width, length, angle, _gaussian_sigma(widths))
  spectrum = (jnp.fft.rfft2(noise) * jnp.fft.rfft2(kernels) *
              _noise_filter_spectrum(height, width))
  layer = jnp.fft.irfft2(spectrum, s=(height, width))

  low = jnp.min(layer, axis=(1, 2), keepdims=True)
  high = jnp.max(layer, axis=(1, 2), keepdims=True)
  layer = (layer - low) / jnp.maximum(high - low, 1e-6)
  black, white = rain_range.levels
  layer = jnp.clip((layer - black) / (white - black), 0.0, 1.0)
  return layer[..., None].astype(jnp.float32)


def rain_mask(rain_layer, threshold):
  """The metric mask M = R > t: (..., H, W, C) rain layer -> (..., H, W, 1) bool.

  A multi-channel layer (e.g. rainy - clean of a real pair) is averaged over channels.
  """
  return rain_layer.mean(axis=-1, keepdims=True) > threshold

