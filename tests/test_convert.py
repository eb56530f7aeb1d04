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
