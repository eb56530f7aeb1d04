"""Rain layers: shapes, range, determinism, jit, per-range streak orientation."""

import jax
import numpy as np
import pytest

from jaxderain import rain


def dominant_angle(layer):
  """Streak angle in degrees from vertical (positive leans right at the top) of a (H, W)
  layer: the principal axis of the central lobe of its autocorrelation."""
  centred = layer.astype(np.float64) - layer.mean()
  auto = np.fft.fftshift(np.fft.irfft2(np.abs(np.fft.rfft2(centred)) ** 2, s=layer.shape))
  rows, cols = np.nonzero(auto > 0.5 * auto.max())
  dy, dx = rows - layer.shape[0] // 2, cols - layer.shape[1] // 2
  weight = auto[rows, cols]
  cxx, cyy, cxy = (weight * dx * dx).sum(), (weight * dy * dy).sum(), (weight * dx * dy).sum()
  return 0.5 * np.degrees(np.arctan2(-2 * cxy, cyy - cxx))


@pytest.mark.parametrize('name', ['small', 'medium', 'large'])
def test_shape_dtype_and_value_range(name):
  layer = rain.synthesize(jax.random.key(0), 3, 40, 56, name)
  assert layer.shape == (3, 40, 56, 1) and layer.dtype == np.float32
  layer = np.asarray(layer)
  assert layer.min() == 0.0 and layer.max() == pytest.approx(1.0)


def test_same_key_same_rain_other_key_other_rain_and_jit():
  key = jax.random.key(7)
  eager = np.asarray(rain.synthesize(key, 4, 64, 64, 'medium'))
  jitted = jax.jit(rain.synthesize, static_argnums=(1, 2, 3, 4))
  np.testing.assert_allclose(np.asarray(jitted(key, 4, 64, 64, 'medium')), eager, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(rain.synthesize(key, 4, 64, 64, 'medium')), eager)
  other = np.asarray(rain.synthesize(jax.random.key(8), 4, 64, 64, 'medium'))
  assert np.abs(other - eager).mean() > 0.01
  assert np.abs(eager[0] - eager[1]).mean() > 0.01  # images of a batch differ


def test_streaks_not_haze():
  layer = np.asarray(rain.synthesize(jax.random.key(1), 16, 128, 128, 'medium'))
  coverage = (layer > 0.1).mean()
  assert 0.03 < coverage < 0.35
  assert layer.mean() < 0.1


def test_orientation_follows_the_range():
  """Single-angle ranges produce streaks at that angle; the unseen rain leans more."""
  for angle in (-25.0, 0.0, 20.0):
    fixed = rain.RainRange(quantity=(250, 250), widths=(3,), length=(30, 30),
                           angle=(angle, angle))
    layer = np.asarray(rain.synthesize(jax.random.key(2), 4, 128, 128, fixed))
    measured = [dominant_angle(x[..., 0]) for x in layer]
    np.testing.assert_allclose(measured, angle, atol=4.0)
  small = np.asarray(rain.synthesize(jax.random.key(3), 16, 128, 128, 'small'))
  unseen = np.asarray(rain.synthesize(jax.random.key(3), 16, 128, 128, rain.UNSEEN_RANGE))
  assert max(abs(dominant_angle(x[..., 0])) for x in small) < 8
  assert min(abs(dominant_angle(x[..., 0])) for x in unseen) > 25


def test_rain_mask_thresholds_channel_mean():
  layer = np.zeros((2, 2, 3), np.float32)
  layer[0, 0] = 0.3
  layer[1, 1] = (0.3, 0.0, 0.0)  # channel mean 0.1
  mask = rain.rain_mask(layer, 0.15)
  assert mask.shape == (2, 2, 1)
  assert mask[..., 0].tolist() == [[True, False], [False, False]]
