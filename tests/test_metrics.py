"""Metrics against references: scikit-image's PSNR/SSIM, and hand-checked E_R / E_B."""

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxderain import data
from jaxderain.configs import checks, grid
from jaxderain.errors import ConfigError
from jaxderain.eval import evaluate, metrics


def images(seed, shape=(37, 45, 3)):
  rng = np.random.default_rng(seed)
  clean = rng.random(shape)
  noisy = np.clip(clean + 0.1 * rng.standard_normal(shape), 0, 1)
  return clean, noisy


def test_y_channel_is_bt601():
  assert metrics.rgb_to_y(np.zeros(3)) == pytest.approx(16.0)
  assert metrics.rgb_to_y(np.ones(3)) == pytest.approx(235.0)


def test_y_channel_matches_scikit_image_on_random_colours():
  """scikit-image's Y of float RGB in [0, 1] is on the 0-255 scale (16-235), as ours."""
  colours = np.random.default_rng(3).random((500, 3))
  reference = rgb2ycbcr(colours)[:, 0]
  np.testing.assert_allclose(metrics.rgb_to_y(colours), reference, rtol=0, atol=1e-9)
  # The comparison tells the channels apart: R and B swapped miss by tens of levels.
  swapped = metrics.rgb_to_y(colours[:, ::-1])
  assert np.abs(swapped - reference).max() > 20
  image = colours.reshape(20, 25, 3)  # (H, W, 3) images keep their layout
  np.testing.assert_allclose(metrics.rgb_to_y(image), rgb2ycbcr(image)[..., 0], atol=1e-9)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_psnr_and_ssim_match_scikit_image_on_y(seed):
  clean, noisy = images(seed)
  y_clean, y_noisy = rgb2ycbcr(clean)[..., 0], rgb2ycbcr(noisy)[..., 0]
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


def grey_rain_set():
  """Two 16x16 images on a flat 0.5 background with grey rain: image 0 has 0.2 on 8
  pixels (above the 0.05 threshold) and 0.03 on 4 (below it, so background); image 1 has
  0.1 on 16 pixels. Nothing clips."""
  clean = [np.full((16, 16, 3), 0.5, np.float32) for _ in range(2)]
  layers = [np.zeros((16, 16, 1), np.float32) for _ in range(2)]
  layers[0].reshape(-1)[:8] = 0.2
  layers[0].reshape(-1)[8:12] = 0.03
  layers[1].reshape(-1)[20:36] = 0.1
  rainy = [c + r for c, r in zip(clean, layers)]
  return data.TestSet('grey', rainy, clean, layers)


def test_score_of_the_identity_and_the_perfect_output():
  test_set = grey_rain_set()
  # By hand, on the 0-255 scale. Image 0's background: 4 of its 248 pixels off by 0.03.
  identity_e_b = (math.sqrt(4 / 248) * 0.03 * 255 + 0.0) / 2
  perfect_e_r = (0.2 * 255 + 0.1 * 255) / 2  # each image's rain pixels, all changed back
  # Y = 16 + 219 * grey: rain r moves Y by 219 r on every pixel it falls on.
  mse_y = [(8 * (219 * 0.2) ** 2 + 4 * (219 * 0.03) ** 2) / 256, 16 * (219 * 0.1) ** 2 / 256]
  identity_psnr = np.mean([10 * math.log10(255 ** 2 / m) for m in mse_y])
  rain_fraction = (8 / 256 + 16 / 256) / 2

  identity = evaluate.score(test_set.rainy, test_set, threshold=0.05)
  assert identity['E_R'] == 0.0
  assert identity['net_removal'] == pytest.approx(0.0, abs=1e-7)
  assert identity['removal_share'] == pytest.approx(0.0, abs=1e-7)
  assert identity['over_subtraction'] == 0.0
  assert identity['E_B'] == pytest.approx(identity_e_b, rel=1e-5)
  assert identity['psnr'] == pytest.approx(identity_psnr, rel=1e-5)
  assert identity['rain_fraction'] == pytest.approx(rain_fraction)
  assert identity['num_images'] == 2 and len(identity['per_image']) == 2

  perfect = evaluate.score(test_set.clean, test_set, threshold=0.05)
  assert perfect['E_B'] == 0.0
  assert perfect['net_removal'] == pytest.approx(1.0)
  assert perfect['removal_share'] == pytest.approx(1.0)
  assert perfect['over_subtraction'] == 0.0
  assert perfect['E_R'] == pytest.approx(perfect_e_r, rel=1e-5)
  assert perfect['psnr'] == math.inf and perfect['ssim'] == pytest.approx(1.0)

  # Both carry the same references: the identity's E_B and PSNR, the perfect output's E_R.
  for result in (identity, perfect):
    assert result['reference'] == {
        'identity': {'E_R': 0.0, 'E_B': pytest.approx(identity_e_b, rel=1e-5),
                     'psnr': pytest.approx(identity_psnr, rel=1e-5)},
        'perfect': {'E_R': pytest.approx(perfect_e_r, rel=1e-5), 'E_B': 0.0}}
  # Half the rain removed everywhere: half of each score's way, E_R half the perfect one.
  half = evaluate.score([r - 0.5 * l for r, l in zip(test_set.rainy, test_set.rain_layer)],
                        test_set, threshold=0.05)
  assert half['net_removal'] == pytest.approx(0.5, rel=1e-5)
  assert half['E_R'] == pytest.approx(perfect_e_r / 2, rel=1e-5)
  assert half['E_B'] == pytest.approx(identity_e_b / 2, rel=1e-4)
  # Twice the rain removed: as far below B as the rain was above it. Net removal 0.
  twice = evaluate.score([r - 2 * l for r, l in zip(test_set.rainy, test_set.rain_layer)],
                         test_set, threshold=0.05)
  assert twice['net_removal'] == pytest.approx(0.0, abs=1e-5)
  assert twice['over_subtraction'] == pytest.approx(1.0, rel=1e-5)
  assert twice['removal_share'] == pytest.approx(2.0, rel=1e-5)
  assert twice['E_R'] == pytest.approx(2 * perfect_e_r, rel=1e-5)
  assert twice['E_B'] == pytest.approx(identity_e_b, rel=1e-4)


def test_the_smallest_test_image_the_checks_accept_can_be_scored():
  low = grid.SCHEMA.field('eval.image_size').low
  assert low == metrics.SSIM_WINDOW
  config = grid.get_config('resnet,medium,8,scale=smoke')
  config.eval.image_size = low - 1
  with pytest.raises(ConfigError, match='eval.image_size'):
    checks.resolve(config)
  clean, noisy = (x.astype(np.float32) for x in images(0, (low, low, 3)))
  test_set = data.TestSet('t', [noisy], [clean], [np.clip(noisy - clean, 0, 1)])
  assert np.isfinite(evaluate.score([clean], test_set, threshold=0.05)['ssim'])
