"""Shared fixtures. The fast XLA CPU flag is applied as launch.py applies it."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import pytest  # pylint: disable=g-import-not-at-top


@pytest.fixture
def data_dir():
  """The real development data (JAXDERAIN_DATA_DIR); tests using it skip without it."""
  path = os.environ.get('JAXDERAIN_DATA_DIR', '')
  if not path or not pathlib.Path(path).is_dir():
    pytest.skip('JAXDERAIN_DATA_DIR is not set to a folder of real data')
  return pathlib.Path(path)
