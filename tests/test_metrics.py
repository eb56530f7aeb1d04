"""Metrics against references: scikit-image's PSNR/SSIM, and hand-checked E_R / E_B."""

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
