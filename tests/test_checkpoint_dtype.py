"""Restoring a checkpoint whose arrays have other dtypes than the model's says so (not
'corrupt'), naming the arrays, both dtypes and the fix."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxderain.errors import CheckpointError
from jaxderain.train import checkpoints


def template():
  return {'params': {f'conv{i}': {'kernel': jnp.zeros((3, 3, 2, 2)), 'bias': jnp.zeros(2)}
                     for i in range(3)},
          'step': jnp.zeros((), jnp.int32)}


def save(workdir, state):
  manager = checkpoints.checkpoint_manager(workdir)
  checkpoints.save(manager, 0, state)
  checkpoints.wait(manager)
  return checkpoints.checkpoint_manager(workdir)


def test_a_float64_array_restored_into_a_float32_model_names_it_and_the_fix(tmp_path):
  state = template()
  state['params']['conv1']['kernel'] = np.ones((3, 3, 2, 2), np.float64)  # as under x64
  manager = save(tmp_path, state)
  with pytest.raises(CheckpointError) as error:
    checkpoints.restore(manager, template())
  message = str(error.value)
  assert len(message.splitlines()) == 1 and 'corrupt' not in message
  assert 'params/conv1/kernel (float64, expected float32)' in message
  assert 'without jax_enable_x64' in message and 'x64 setting' in message


def test_many_mismatched_arrays_are_capped(tmp_path):
  state = {'params': {name: {key: np.asarray(value, np.float64) for key, value in conv.items()}
                      for name, conv in template()['params'].items()},
           'step': jnp.zeros((), jnp.int32)}
  manager = save(tmp_path, state)
  with pytest.raises(CheckpointError, match=r'6 arrays, e\.g\. params/conv0/bias \(float64, '
                     r'expected float32\), '):
    checkpoints.restore(manager, template())


def test_matching_dtypes_restore_unchanged(tmp_path):
  state = template()
  state['params']['conv2']['bias'] = jnp.arange(2.0)
  restored = checkpoints.restore(save(tmp_path, state), template())
  np.testing.assert_array_equal(restored['params']['conv2']['bias'], [0.0, 1.0])
  assert restored['params']['conv2']['bias'].dtype == jnp.float32
