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


def test_official_rcdnet_weights_convert_and_evaluate(tmp_path):
  torch = pytest.importorskip('torch')
  import numpy as np  # pylint: disable=g-import-not-at-top
  from configs import grid  # pylint: disable=g-import-not-at-top
  from jaxderain import experiment  # pylint: disable=g-import-not-at-top
  from jaxderain.train import loop  # pylint: disable=g-import-not-at-top
  from test_models_rcdnet import official_state_dict  # pylint: disable=g-import-not-at-top

  config = grid.get_config('rcdnet,medium,8,scale=smoke')
  state = official_state_dict(0, **dict(config.model))
  weights = tmp_path / 'model_best.pt'
  torch.save({'module.' + k: torch.from_numpy(v) for k, v in state.items()}, weights)
  arg = '--config=configs/grid.py:rcdnet,medium,8,scale=smoke'
  workdir = tmp_path / 'converted'
  result = convert(arg, f'--torch={weights}', f'--workdir={workdir}')
  assert result.returncode == 0, result.stderr
  assert 'Wrote' in result.stdout

  _, _, template, _ = experiment.state_template(config)
  restored = loop.restore(loop.checkpoint_manager(workdir), template)
  np.testing.assert_allclose(np.asarray(restored.params['rain_kernel0'][...]),
                             state['weight0'].transpose(2, 3, 1, 0))  # OIHW -> HWIO
  evaluation = subprocess.run([sys.executable, 'launch.py', arg, f'--workdir={workdir}',
                               '--mode=eval'], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, check=False)
  assert evaluation.returncode == 0, evaluation.stderr
  assert (workdir / 'eval' / 'natural_unseen.json').exists()
  again = convert(arg, f'--torch={weights}', f'--workdir={workdir}')
  assert again.returncode != 0 and 'already holds checkpoints' in again.stderr
