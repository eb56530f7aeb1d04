"""Metrics against references: scikit-image's PSNR/SSIM, and hand-checked E_R / E_B."""

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxderain.eval import metrics


def images(seed, shape=(37, 45, 3)):
  rng = np.random.default_rng(seed)
  clean = rng.random(shape)
  noisy = np.clip(clean + 0.1 * rng.standard_normal(shape), 0, 1)
  return clean, noisy


def test_y_channel_is_bt601():
  assert metrics.rgb_to_y(np.zeros(3)) == pytest.approx(16.0)
  assert metrics.rgb_to_y(np.ones(3)) == pytest.approx(235.0)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_psnr_and_ssim_match_scikit_image_on_y(seed):
  clean, noisy = images(seed)
  y_clean, y_noisy = metrics.rgb_to_y(clean), metrics.rgb_to_y(noisy)
  reference_psnr = peak_signal_noise_ratio(y_clean, y_noisy, data_range=255)
  reference_ssim = structural_similarity(y_clean, y_noisy, data_range=255,
                                         gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
  assert metrics.psnr_y(noisy, clean) == pytest.approx(reference_psnr, abs=1e-4)
  assert metrics.ssim_y(noisy, clean) == pytest.approx(reference_ssim, abs=1e-4)
  assert metrics.ssim_y(clean, clean) == pytest.approx(1.0)


def test_decoupled_errors_by_hand():
  clean = np.full((2, 2, 3), 0.5)
  rain_layer = np.zeros((2, 2, 1))
  rain_layer[0, 0] = 0.2
  rainy = np.clip(clean + rain_layer, 0, 1)
  mask = rain_layer > 0.1
  # Perfect output: changes the rain pixel by 0.2 (51 levels), background error 0.
  e_r, e_b = metrics.decoupled_errors(clean, rainy, clean, mask)
  assert (e_r, e_b) == pytest.approx((51.0, 0.0))
  # Identity: E_R 0; an output 0.1 too dark everywhere: E_B 25.5.
  assert metrics.decoupled_errors(rainy, rainy, clean, mask)[0] == 0.0
  assert metrics.decoupled_errors(rainy - 0.1, rainy, clean, mask) == pytest.approx(
      (25.5, 25.5))
  assert metrics.removal_share(clean, rainy, clean, mask) == pytest.approx(1.0)
  assert metrics.removal_share(rainy, rainy, clean, mask) == pytest.approx(0.0)
  half = rainy - 0.5 * (rainy - clean)
  assert metrics.removal_share(half, rainy, clean, mask) == pytest.approx(0.5)


def rain_scene(seed, shape=(24, 20, 3)):
  """(clean, rainy, mask): streaks of 0.1-0.4 on a third of the pixels, clipped at 1."""
  rng = np.random.default_rng(seed)
  clean = rng.random(shape) * 0.8
  layer = np.where(rng.random(shape[:2] + (1,)) < 0.3, rng.uniform(0.1, 0.4, shape[:2] + (1,)),
                   0.0)
  return clean, np.clip(clean + layer, 0, 1), layer > 0.05


@pytest.mark.parametrize('seed', [0, 1])
def test_net_removal_is_zero_for_identity_one_for_perfect(seed):
  clean, rainy, mask = rain_scene(seed)
  assert metrics.net_removal(rainy, rainy, clean, mask) == pytest.approx(0.0)
  assert metrics.net_removal(clean, rainy, clean, mask) == pytest.approx(1.0)
  half = rainy - 0.5 * (rainy - clean)
  assert metrics.net_removal(half, rainy, clean, mask) == pytest.approx(0.5)
  assert metrics.over_subtraction(half, rainy, clean, mask) == 0.0
  assert math.isnan(metrics.net_removal(clean, rainy, clean, np.zeros_like(mask)))


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_over_subtraction_never_raises_net_removal(seed):
  clean, rainy, mask = rain_scene(seed)
  rng = np.random.default_rng(seed + 10)
  output = np.clip(clean + rng.uniform(-0.2, 0.5, clean.shape) * (rainy - clean), 0, 1)
  before = metrics.net_removal(output, rainy, clean, mask)
  for _ in range(20):  # push random pixels further below the clean image
    darker = output.copy()
    pick = rng.random(clean.shape) < 0.2
    darker[pick] = np.minimum(darker[pick], clean[pick]) - rng.uniform(0, 0.2, pick.sum())
    after = metrics.net_removal(darker, rainy, clean, mask)
    assert after <= before + 1e-12
    assert metrics.over_subtraction(darker, rainy, clean, mask) >= metrics.over_subtraction(
        output, rainy, clean, mask)
    output, before = darker, after
  # The least-squares share, by contrast, rewards removing twice the rain.
  twice = rainy - 2.0 * (rainy - clean)
  assert metrics.removal_share(twice, rainy, clean, mask) == pytest.approx(2.0)
  assert metrics.net_removal(twice, rainy, clean, mask) == pytest.approx(0.0)
  assert metrics.over_subtraction(twice, rainy, clean, mask) == pytest.approx(1.0)
