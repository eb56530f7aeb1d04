"""A workdir written by an earlier jaxderain (tests/data/old_workdir: the smoke ResNet
resnet,medium,8,scale=smoke, trained and evaluated by main at commit 4d1adc2) restores
bit for bit and evaluates to the numbers that version wrote."""

import json
import pathlib
import shutil

import jax
import numpy as np

from jaxderain import experiment
from jaxderain.configs import grid
from jaxderain.train import checkpoints

OLD = pathlib.Path(__file__).parent / 'data' / 'old_workdir'


def numbers(tree, prefix=''):
  """{path: number} of every number in a JSON tree."""
  if isinstance(tree, dict):
    return {k: v for key, value in tree.items()
            for k, v in numbers(value, f'{prefix}/{key}').items()}
  if isinstance(tree, list):
    return {k: v for i, value in enumerate(tree)
            for k, v in numbers(value, f'{prefix}/{i}').items()}
  return {prefix: tree} if isinstance(tree, (int, float)) and not isinstance(tree, bool) else {}


def test_an_old_workdir_restores_bit_identically_and_evaluates_the_same(tmp_path):
  workdir = tmp_path / 'old'
  shutil.copytree(OLD, workdir)
  config = grid.get_config('resnet,medium,8,scale=smoke')
  _, _, template, _ = experiment.state_template(config)
  manager = checkpoints.checkpoint_manager(workdir)
  for step in manager.all_steps():
    state = checkpoints.restore(manager, template, step)  # checks the saved fingerprint
    saved = json.loads((workdir / 'checkpoints' / str(step) / 'fingerprint' / 'metadata')
                       .read_text())
    assert checkpoints.fingerprint(jax.device_get(state)) == saved['sha256']
  results = experiment.evaluate(config, str(workdir))
  for name in ('natural_unseen', 'natural_train'):
    before = numbers(json.loads((OLD / 'eval' / f'{name}.json').read_text()))
    now = numbers(results[name])
    assert set(before) <= set(now), sorted(set(before) - set(now))
    # Bit-identical on the machine type that wrote it; other CPUs round differently.
    np.testing.assert_allclose([now[k] for k in before], list(before.values()),
                               rtol=1e-4, atol=1e-4, err_msg=name)
