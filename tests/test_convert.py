"""python -m jaxderain.convert: clear errors for files that are not state_dicts, and a round
trip through the converted checkpoint. All need torch: the command reads checkpoints with
torch.load (without torch it says so in one line, tests/test_cli.py)."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
needs_torch = pytest.mark.skipif(importlib.util.find_spec('torch') is None,
                                 reason='needs torch (not a requirement)')


def convert(*args):
  return subprocess.run([sys.executable, '-m', 'jaxderain.convert', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)


def error_line(result):
  """The one line a failed command printed (absl may log INFO lines before it)."""
  assert result.returncode != 0 and 'Traceback' not in result.stderr, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, result.stderr
  return lines[0]


@needs_torch
def test_a_state_dict_of_another_architecture_is_one_short_line(tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  from jaxderain.configs import grid  # pylint: disable=g-import-not-at-top
  state = official_state('swinir', dict(grid.MODELS['swinir']['smoke']))
  weights = tmp_path / 'swinir.pt'
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, weights)
  result = convert('--config=configs/grid.py:rcdnet,medium,8,scale=smoke',
                   f'--torch={weights}', f'--workdir={tmp_path / "w"}')
  line = error_line(result)
  assert len(line) < 1000, line
  assert str(weights) in line and 'does not fit the RCDNet model' in line
  assert 'another architecture' in line
  assert re.search(r'\d+ keys missing, e\.g\. [\w.]+, [\w.]+, [\w.]+; \d+ unexpected keys, '
                   r'e\.g\. ', line), line
  assert not (tmp_path / 'w').exists()


@needs_torch
def test_a_pickled_whole_model_is_one_line_saying_what_to_pass(tmp_path):
  import torch  # pylint: disable=g-import-not-at-top
  weights = tmp_path / 'model.pt'
  torch.save(torch.nn.Linear(2, 2), weights)  # the whole module, not its state_dict
  result = convert('--config=configs/grid.py:rcdnet,medium,8,scale=smoke',
                   f'--torch={weights}', f'--workdir={tmp_path / "w"}')
  line = error_line(result)
  assert str(weights) in line and 'torch.nn.modules.linear.Linear' in line
  assert 'not a state_dict' in line and 'model.state_dict()' in line


# What torch.save wrote -> the words the error must contain besides the file's name.
NOT_STATE_DICTS = {
    'list': ('[torch.ones(2), torch.ones(3)]', 'holds a list of 2 items, not a state_dict'),
    'tensor': ('torch.ones(2, 3)', 'holds a Tensor of shape (2, 3), not a state_dict'),
    'no_tensors': ("{'epoch': 3, 'net': {'w': torch.ones(2)}}",
                   "holds a dict without tensors, not a state_dict"),
    'garbage': (None, 'is not a PyTorch checkpoint (not written by torch.save)'),
}


@needs_torch
def test_files_that_are_not_state_dicts_are_one_clear_line_each(tmp_path):
  """read_state_dict in a fresh process (importing jaxderain.convert defines its flags)."""
  script = ['import json, sys, torch', 'from jaxderain import convert, errors',
            'messages = {}']
  for name, (value, _) in NOT_STATE_DICTS.items():
    path = tmp_path / f'{name}.pt'
    if value is None:
      path.write_bytes(b'not a checkpoint')
    else:
      script.append(f'torch.save({value}, {str(path)!r})')
    script += ['try:', f'  convert.read_state_dict({str(path)!r})',
               'except errors.CheckpointError as error:',
               f'  messages[{name!r}] = str(error)']
  script.append('print(json.dumps(messages))')
  result = subprocess.run([sys.executable, '-c', '\n'.join(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  messages = json.loads(result.stdout.strip().splitlines()[-1])
  assert messages.keys() == NOT_STATE_DICTS.keys()
  for name, (_, words) in NOT_STATE_DICTS.items():
    message = messages[name]
    assert len(message.splitlines()) == 1 and len(message) < 500, message
    assert str(tmp_path / f'{name}.pt') in message and words in message, message
    assert 'pass' in message
  assert "entries holding dicts: net;" in messages['no_tensors']
  assert "torch.save(checkpoint['net'], 'weights.pt')" in messages['no_tensors']


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


@needs_torch
@pytest.mark.parametrize('arch', ['rcdnet', 'spdnet', 'swinir'])
def test_official_weights_convert_and_evaluate(tmp_path, arch):
  import torch  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from jaxderain.configs import grid  # pylint: disable=g-import-not-at-top
  from jaxderain import experiment, models  # pylint: disable=g-import-not-at-top
  from jaxderain.train import checkpoints  # pylint: disable=g-import-not-at-top

  config = grid.get_config(f'{arch},medium,8,scale=smoke')
  state = official_state(arch, dict(config.model))
  weights = tmp_path / 'official.pt'  # saved as DataParallel would, nested like BasicSR
  torch.save({'params': {'module.' + k: torch.from_numpy(np.array(v))  # writable copies
                         for k, v in state.items()}}, weights)
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


@needs_torch
def test_bfloat16_and_half_tensors_widen_and_nan_weights_are_refused(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel
  from jaxderain.convert import read_state_dict  # pylint: disable=import-outside-toplevel
  from jaxderain.errors import CheckpointError  # pylint: disable=import-outside-toplevel
  torch.save({'params_ema': {}, 'params': {
      'module.w': torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
      'module.h': torch.ones(2, dtype=torch.float16)}}, tmp_path / 'low.pt')
  arrays = read_state_dict(tmp_path / 'low.pt')
  assert {k: v.dtype.name for k, v in arrays.items()} == {'w': 'float32', 'h': 'float32'}
  assert arrays['w'].ravel().tolist() == [0, 1, 2, 3, 4, 5]
  torch.save({'w': torch.tensor([1.0, float('nan')])}, tmp_path / 'nan.pt')
  with pytest.raises(CheckpointError, match=r'holding NaN or infinite values \(w\)'):
    read_state_dict(tmp_path / 'nan.pt')
