"""launch.py as a user runs it: bad input stops early with one clear line."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def launch(*args):
  return subprocess.run([sys.executable, 'launch.py', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, check=False)


@pytest.mark.parametrize('args, message', [
    (['--config=configs/grid.py:resnet,heavy,64', '--workdir=W'],
     "unknown rain range 'heavy'"),
    (['--config=configs/grid.py:resnet,medium,64', '--workdir=W', '--config.bogus=1'],
     'names no field of the config'),
])
def test_bad_config_is_one_clear_error(args, message):
  result = launch(*args)
  assert result.returncode != 0
  assert message in result.stderr and 'Traceback' not in result.stderr


def test_eval_without_checkpoint_says_train_first(tmp_path):
  result = launch('--config=configs/grid.py:resnet,medium,8,scale=smoke',
                  f'--workdir={tmp_path / "w"}', '--mode=eval')
  assert result.returncode != 0
  assert 'No checkpoint in' in result.stderr and 'train this grid point first' in result.stderr
  assert not (tmp_path / 'w').exists()  # nothing created by a failed eval


def test_missing_category_folder_is_one_clear_error(tmp_path):
  result = launch('--config=configs/grid.py:resnet,medium,8,scale=smoke,category=/no/such',
                  f'--workdir={tmp_path / "w"}')
  assert result.returncode != 0
  assert "Unknown background category '/no/such'" in result.stderr
  assert 'Traceback' not in result.stderr
