"""Structural complexity: analytic cases and invariances."""

import jax
import numpy as np
import pytest

from jaxderain.study import complexity


def checkerboard(size, cell):
  y, x = np.indices((size, size))
  board = ((y // cell + x // cell) % 2).astype(np.float32)
  return np.repeat(board[None, :, :, None], 3, axis=-1)


def test_constant_image_has_zero_complexity():
  assert complexity.complexity(np.full((2, 32, 32, 3), 0.7))[0] == pytest.approx(0.0)


@pytest.mark.parametrize('cell', [1, 2, 4, 8])
def test_checkerboard_contributes_at_exactly_one_scale(cell):
  terms = np.asarray(complexity.scale_terms(checkerboard(32, cell), num_scales=5))[0]
  k = int(np.log2(cell))  # blocks of 2^(k+1) = 2 cells average the board to a constant
  expected = np.zeros(5)
  expected[k] = 3 * 0.25 / 2  # (O(f,f) - O(c,c)) / 2 with O(f,f) = 3 * 0.5, O(c,c) = 3 * 0.25
  np.testing.assert_allclose(terms, expected, atol=1e-6)


def test_invariant_to_a_global_intensity_shift_and_batched():
  images = np.asarray(jax.random.uniform(jax.random.key(0), (3, 64, 64, 3))) * 0.5
  base = np.asarray(complexity.complexity(images))
  np.testing.assert_allclose(np.asarray(complexity.complexity(images + 0.3)), base, rtol=1e-4)
  single = np.asarray(complexity.complexity(images[1:2]))
  np.testing.assert_allclose(single, base[1:2], rtol=1e-6)
  assert len(set(base.round(6))) == 3  # different images, different values

