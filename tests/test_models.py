"""The model registry and the paper's ResNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxderain import models


def conv_params(cin, cout):
  return 9 * cin * cout + cout


def test_resnet_parameter_count_and_any_size():
  model = models.create('resnet', {}, seed=0)
  expected = conv_params(3, 64) + 16 * 2 * conv_params(64, 64) + conv_params(64, 3)
  assert models.num_params(model) == expected == 1_185_219
  small = models.create('resnet', {'features': 8, 'num_blocks': 2}, seed=0)
  x = jax.random.uniform(jax.random.key(0), (2, 67, 93, 3))
  assert small(x).shape == (2, 67, 93, 3)


def test_global_skip_makes_a_zero_body_the_identity():
  model = models.create('resnet', {'features': 8, 'num_blocks': 1}, seed=0)
  model.tail.kernel[...] = jnp.zeros(model.tail.kernel.shape)
  model.tail.bias[...] = jnp.zeros(model.tail.bias.shape)
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
  np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(x))


def test_unknown_arch_lists_the_registry():
  with pytest.raises(ValueError, match="Unknown arch 'vgg': choose one of resnet, unet"):
    models.get('vgg')
