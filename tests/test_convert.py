"""python -m jaxderain.convert: errors without torch; a round trip where torch exists."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def convert(*args):
  return subprocess.run([sys.executable, '-m', 'jaxderain.convert', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)


def test_arch_without_official_weights_is_one_clear_error(tmp_path):
  weights = tmp_path / 'w.pt'
  weights.write_bytes(b'x')
  result = convert('--config=configs/grid.py:resnet,medium,8,scale=smoke',
                   f'--torch={weights}', f'--workdir={tmp_path / "w"}')
  assert result.returncode != 0
  assert "There is no PyTorch converter for 'resnet'" in result.stderr
  assert 'Traceback' not in result.stderr and not (tmp_path / 'w').exists()



def official_state(arch, model_options):
  """Random weights of the smoke preset in the official PyTorch state_dict layout."""
  if arch == 'rcdnet':
    from test_models_rcdnet import official_state_dict  # pylint: disable=g-import-not-at-top
    return official_state_dict(0, **model_options)
  if arch == 'swinir':
    from test_models_unet_swinir import random_official_state  # pylint: disable=g-import-not-at-top
    return random_official_state(0, **model_options)
  from jaxderain import models  # pylint: disable=g-import-not-at-top
  from test_models_spdnet import as_torch_state  # pylint: disable=g-import-not-at-top
  return as_torch_state(models.create('spdnet', model_options, seed=1))


@pytest.mark.parametrize('arch', ['rcdnet', 'spdnet', 'swinir'])
def test_official_weights_convert_and_evaluate(tmp_path, arch):
  torch = pytest.importorskip('torch')
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from configs import grid  # pylint: disable=g-import-not-at-top
  from jaxderain import experiment, models  # pylint: disable=g-import-not-at-top
  from jaxderain.train import checkpoints  # pylint: disable=g-import-not-at-top

  config = grid.get_config(f'{arch},medium,8,scale=smoke')
  state = official_state(arch, dict(config.model))
  weights = tmp_path / 'official.pt'  # saved as DataParallel would, nested like BasicSR
  torch.save({'params': {'module.' + k: torch.from_numpy(v) for k, v in state.items()}},
             weights)
  arg = f'--config=configs/grid.py:{arch},medium,8,scale=smoke'
  workdir = tmp_path / 'converted'
  result = convert(arg, f'--torch={weights}', f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  assert 'Wrote' in result.stdout

  _, graphdef, template, _ = experiment.state_template(config)
  expected = nnx.merge(graphdef, template.params, template.model_state)
  models.get(arch).convert_torch(state, expected)
  restored = checkpoints.restore(checkpoints.checkpoint_manager(workdir), template)
  for a, b in zip(jax.tree.leaves(nnx.state(expected, nnx.Param)),
                  jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  evaluation = subprocess.run([sys.executable, 'launch.py', arg, f'--workdir={workdir}',
                               '--mode=eval'], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False)
  assert evaluation.returncode == 0, evaluation.stderr
  assert (workdir / 'eval' / 'natural_unseen.json').exists()
  again = convert(arg, f'--torch={weights}', f'--workdir={workdir}')
  assert again.returncode != 0 and 'already holds checkpoints' in again.stderr
