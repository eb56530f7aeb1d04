"""Shared fixtures. The fast XLA CPU flag is applied as launch.py applies it."""

import atexit
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One XLA compilation cache for the session, shared by the many child processes (launch.py,
# derain, sweeps) that compile the same programs: a warm child starts about 4 s sooner, and
# its results are bit-identical (the key includes XLA_FLAGS). Set before JAX is imported.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='jaxderain-tests-xla-')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], True)
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import pytest  # pylint: disable=g-import-not-at-top


# The real development data is handed only to the tests that ask for it (`data_dir`); every
# other test and its child processes run as on a machine without it.
REAL_DATA_DIR = os.environ.pop('JAXDERAIN_DATA_DIR', '')


@pytest.fixture
def data_dir():
  """The real development data (JAXDERAIN_DATA_DIR); tests using it skip without it."""
  path = REAL_DATA_DIR
  if not path or not pathlib.Path(path).is_dir():
    pytest.skip('JAXDERAIN_DATA_DIR is not set to a folder of real data')
  return pathlib.Path(path)


SMOKE_POINT = 'configs/grid.py:resnet,medium,8,scale=smoke'


@pytest.fixture(scope='session')
def smoke_workdir(tmp_path_factory):
  """A smoke ResNet trained by launch.py as a user runs it (15-30 s), shared read-only by
  the tests that need a trained run."""
  folder = tmp_path_factory.mktemp('smoke')
  result = subprocess.run([sys.executable, 'launch.py', f'--config={SMOKE_POINT}',
                           f'--workdir={folder}'], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return folder


def run_commands(command: str, *argvs: list[str]) -> list[subprocess.CompletedProcess]:
  """Run a command line (launch, or a module such as jaxderain.derain) once per argument
  list, all in one child process (tests/cli_cases.py); returns what each run gave."""
  child = subprocess.run([sys.executable, 'tests/cli_cases.py', command,
                          json.dumps([list(argv) for argv in argvs])], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, check=False)
  assert child.returncode == 0, child.stderr[-3000:]
  return [subprocess.CompletedProcess(argv, run['code'], run['stdout'], run['stderr'])
          for argv, run in zip(argvs, json.loads(child.stdout.strip().splitlines()[-1]))]
