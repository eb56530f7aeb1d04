"""Nothing lost: bad inputs stop before any work with one line, outputs never overwrite
inputs, a workdir serves one run at a time. Marker: reliability."""

import pathlib
import subprocess
import sys

import pytest

from configs import grid
from jaxderain import experiment

pytestmark = pytest.mark.reliability
ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = 'configs/grid.py:resnet,medium,8,scale=smoke'


def run_cli(*args, timeout=300):
  """A command line of the project in a child; returns the CompletedProcess."""
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def last_line(result) -> str:
  return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('field, value, message', [
    ('keep_checkpoints', 0, 'config.keep_checkpoints must be >= 1, got 0'),
    ('learning_rate', 0.0, 'config.learning_rate must be > 0.0'),
    ('b2', 1.0, r'config.b2 must be in \[0.0, 1.0\)'),
    ('test_fraction', 1.0, r'config.test_fraction must be in \(0.0, 1.0\)'),
    ('eval.num_images', 0, 'config.eval.num_images must be >= 1'),
    ('eval.rain_threshold', 1.5, 'config.eval.rain_threshold must be in'),
])
def test_out_of_range_fields_are_refused(field, value, message):
  config = grid.get_config('resnet,medium,8,scale=smoke')
  *parents, leaf = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value
  with pytest.raises(experiment.ConfigError, match=message):
    experiment.check(config)


def test_bad_command_lines_are_one_line_before_any_work(tmp_path):
  workdir = tmp_path / 'run'
  (workdir / 'checkpoints' / '10').mkdir(parents=True)  # a checkpoint that must survive
  cases = {
      ('launch.py', f'--config={SMOKE}', '--config.keep_checkpoints=0'):
          'config.keep_checkpoints must be >= 1',
      ('launch.py', f'--config={SMOKE}', '--config.arch=unet'):
          'config.model holds options unet does not take (num_blocks)',
      ('launch.py', '--config=configs/grid.py'): 'no grid point: name one after a colon',
  }
  for args, message in cases.items():
    result = run_cli(*args, f'--workdir={workdir}')
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
  assert sorted(p.name for p in workdir.rglob('*')) == ['10', 'checkpoints']
  result = run_cli('-m', 'jaxderain.study', 'run', '--seeds=abc', f'--out={tmp_path}')
  assert result.returncode != 0 and 'Traceback' not in result.stderr
  assert last_line(result) == ('error: --seeds must be integers separated by commas, e.g. '
                               '--seeds=0,1; got abc.')
