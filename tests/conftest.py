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
# other test and its child processes run as on a machine without it. It is the folder
# JAXDERAIN_DATA_DIR names, else the shared data folder beside the checkout, when there.
BESIDE_THE_CHECKOUT = ROOT.parent / 'shared' / 'data'
REAL_DATA_DIR = os.environ.pop('JAXDERAIN_DATA_DIR', '') or (
    str(BESIDE_THE_CHECKOUT) if BESIDE_THE_CHECKOUT.is_dir() else '')
NO_REAL_DATA = 'no real data here (JAXDERAIN_DATA_DIR, or shared/data beside the checkout)'


@pytest.fixture
def data_dir():
  """The real development data; tests using it skip without it."""
  path = REAL_DATA_DIR
  if not path or not pathlib.Path(path).is_dir():
    pytest.skip(NO_REAL_DATA)
  return pathlib.Path(path)


# The only reasons a test may skip; any other skip fails the run (pytest_sessionfinish), so
# a check that silently stops running is seen. Each is a fact of the machine, not of the code.
ALLOWED_SKIPS = {
    NO_REAL_DATA: 'the real data is optional; every other test runs without it',
    'cannot mount a tmpfs here (needs root)': 'a real full disk needs a mount',
    'running as root without setpriv': 'a permission test needs an unprivileged user',
    'the unprivileged user cannot run this Python': 'as above',
    'this jaxlib does not know the flag': 'the fast CPU flag needs a recent jaxlib',
    'needs VmHWM': 'peak memory is read from Linux /proc',
    'needs Linux': 'peak memory is read from Linux /proc',
    'needs torch': 'converting reads PyTorch files with torch.load and the mirrors fill '
                   'torch modules; torch is optional (the parity checks run from '
                   'tests/data/references without it)',
}
_SKIPPED: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
  if report.skipped and isinstance(report.longrepr, tuple):
    _SKIPPED.append((report.nodeid, report.longrepr[2].removeprefix('Skipped: ')))


def pytest_sessionfinish(session, exitstatus):
  if hasattr(session.config, 'workerinput'):  # a pytest-xdist worker: the controller judges
    return
  unexpected = [(test, why) for test, why in _SKIPPED
                if not any(why.startswith(allowed) for allowed in ALLOWED_SKIPS)]
  if unexpected and exitstatus == 0:
    session.exitstatus = 1
  reporter = session.config.pluginmanager.get_plugin('terminalreporter')
  if unexpected and reporter:
    reporter.write_line('Skips not on the allow-list (tests/conftest.py ALLOWED_SKIPS):',
                        red=True)
    for test, why in unexpected:
      reporter.write_line(f'  {test}: {why}', red=True)


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


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
  """The `error:` lines of a command's stderr, after checking it printed no traceback."""
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def point_test_sets(config) -> list:
  """The test sets a grid point's config evaluates on (as experiment.evaluate builds them)."""
  from jaxderain import data  # pylint: disable=import-outside-toplevel
  from jaxderain.configs import checks  # pylint: disable=import-outside-toplevel
  resolved = checks.resolve(config)
  return data.point_test_sets(resolved.backgrounds, resolved.tests, resolved.rain_shifts,
                              resolved.rain_range)
