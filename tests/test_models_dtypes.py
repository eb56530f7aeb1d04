"""Every architecture's parameters (and BatchNorm statistics) are float32 whatever
jax_enable_x64 says, so checkpoints and converted weights do not depend on it."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxderain.configs import grid
from jaxderain import models


@pytest.mark.parametrize('arch', grid.ARCHS)
def test_parameters_are_float32_under_x64(arch):
  with jax.enable_x64(True):
    assert jnp.zeros(()).dtype == jnp.float64  # x64 is really on
    model = nnx.eval_shape(lambda: models.create(arch, grid.MODELS[arch]['smoke'], seed=0))
  leaves = jax.tree_util.tree_leaves_with_path(nnx.state(model))
  assert leaves
  wrong = {jax.tree_util.keystr(path): str(leaf.dtype) for path, leaf in leaves
           if leaf.dtype != jnp.float32}
  assert not wrong, wrong
