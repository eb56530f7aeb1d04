"""Every command line gives one line, `error: <problem and fix>`, for each bad input.

Each command's cases run in one process (tests/cli_cases.py) through the command's own
flag parsing and main, as `cli.run` runs them."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import run_commands
from jaxderain import cpu_flags
from jaxderain.workdir import hold

SMOKE = 'configs/grid.py:resnet,medium,8,scale=smoke'


def cases(tmp: pathlib.Path, trained: pathlib.Path) -> dict[str, list[tuple[list, str]]]:
  """Per command: (arguments, a part of the one line it must print)."""
  empty, no_config = tmp / 'empty', tmp / 'no_config'
  return {
      'launch': [
          (['--bogus'], "Unknown command line flag 'bogus'"),
          ([f'--config={SMOKE}', f'--workdir={tmp / "w"}', 'extra'],
           'unexpected arguments extra'),
          (['--config=configs/grid.py:resnet,heavy,64', '--workdir=W'],
           "unknown rain range 'heavy'"),
          (['--config=configs/grid.py:resnet,medium,64', '--workdir=W', '--config.bogus=1'],
           'bogus'),
          ([f'--config={SMOKE},category=/no/such', f'--workdir={tmp / "w"}'],
           "Unknown background category '/no/such'"),
          ([f'--config={SMOKE}', f'--workdir={tmp / "w"}', '--mode=eval'],
           'No checkpoint in'),
          (['--config=configs/grid.py:unet,medium,8,scale=smoke', f'--workdir={trained}',
            '--mode=eval'], 'was trained with a different config (arch: resnet -> unet'),
          ([f'--config={SMOKE},seed=-1', '--workdir=W'], 'seed must be an integer from 0'),
          ([f'--config={SMOKE},seed=99999999999999999999999', '--workdir=W'],
           'seed must be an integer from 0 to 4294967295'),
          ([f'--config={SMOKE}', '--workdir=W', '--config.eval.seed=-5'],
           'config.eval.seed must be in [0, 4294967295], got -5'),
          ([f'--config={SMOKE}', '--workdir=W', '--config.model.features=0'],
           'config.model.features must be positive, got 0'),
      ],
      'jaxderain.convert': [
          (['--bogus'], "Unknown command line flag 'bogus'"),
          (['--config=configs/grid.py:spdnet,medium', f'--torch={tmp / "w.pt"}',
            f'--workdir={tmp / "c"}'], 'it needs ARCH,RAIN_RANGE,N first'),
          (['--config=configs/grid.py:spdnet,medium,8,scale=smoke', '--torch=/no/such.pt',
            f'--workdir={tmp / "c"}'], '/no/such.pt is not a file'),
          ([f'--config={SMOKE}', f'--torch={tmp / "w.pt"}', f'--workdir={tmp / "c"}'],
           "There is no PyTorch converter for 'resnet'"),
          (['--config=configs/grid.py:spdnet,medium,8,scale=smoke', f'--torch={tmp / "w.pt"}',
            f'--workdir={tmp / "c"}'], 'PyTorch'),  # not a state_dict, or torch missing
          (['--config=configs/grid.py:spdnet,medium,8,scale=smoke', f'--torch={tmp / "w.pt"}',
            f'--workdir={tmp / "busy"}'], 'busy is in use: training by PID'),
          (['--config=configs/grid.py:swinir,medium,8,scale=smoke', f'--torch={tmp / "w.pt"}',
            f'--workdir={tmp / "c"}', '--config.model.embed_dim=0'],
           'config.model.embed_dim must be positive, got 0'),
      ],
      'jaxderain.derain': [
          (['--bogus'], "Unknown command line flag 'bogus'"),
          ([f'--workdir={trained}', '--input=/no/such.png', f'--output={tmp / "o"}'],
           '/no/such.png does not exist'),
          ([f'--workdir={trained}', f'--input={empty}', f'--output={tmp / "o"}'],
           'holds no image files'),
          ([f'--workdir={no_config}', f'--input={tmp / "a.png"}', f'--output={tmp / "o"}'],
           'config.json does not exist'),
          ([f'--workdir={trained}', f'--input={tmp / "a.png"}', f'--output={tmp / "o"}',
            '--tile=33'], '--tile must be a positive multiple of 32'),
          ([f'--workdir={trained}', f'--input={tmp / "a.png"}', f'--output={tmp / "o"}',
            '--batch=0'], 'flag --batch=0: 0 is not a positive integer'),
          ([f'--workdir={tmp / "zero_features"}', f'--input={tmp / "a.png"}',
            f'--output={tmp / "o"}'], 'config.model.features must be positive, got 0'),
      ],
      'jaxderain.study': [
          (['run', '--bogus'], "Unknown command line flag 'bogus'"),
          ([], 'name one command: run, report, complexity'),
          (['run', '--grid=nope', f'--out={tmp / "s"}'], 'value should be one of'),
          (['run', '--seeds=a,b', f'--out={tmp / "s"}'], '--seeds must be integers'),
          (['run', '--seeds=-1', f'--out={tmp / "s"}'], '--seeds must be integers from 0'),
          (['plan', '--gpus=1000000000'], 'is not an integer in the range [0, 100000]'),
          (['status', f'--out={tmp / "typo"}'], 'typo does not exist'),
          (['report'], 'pass --out=DIR'),
          (['report', f'--out={empty}'], 'points does not exist'),
          (['complexity', f'--categories={empty}'], 'holds no image files'),
      ],
      'jaxderain.data.prepare': [
          (['--bogus'], "Unknown command line flag 'bogus'"),
          ([], 'pass exactly one of --category=NAME or --paired=NAME'),
          (['--category=urban100', f'--manual_dir={empty}', f'--data_dir={tmp / "d"}'],
           'holds no image files'),
      ],
      'jaxderain.data.show': [
          (['--bogus', f'--out={tmp / "x.png"}'], "Unknown command line flag 'bogus'"),
          (['--what=backgrounds', '--categories=/no/such', f'--out={tmp / "x.png"}'],
           "Unknown background category '/no/such'"),
          (['--what=backgrounds', f'--categories={empty}', f'--out={tmp / "x.png"}'],
           'holds no image files'),
      ],
      'jaxderain.models': [
          (['--bogus'], "Unknown command line flag 'bogus'"),
          (['--arch=foo'], "Unknown arch 'foo'"),
      ],
  }


@pytest.fixture(scope='module')
def table(tmp_path_factory, smoke_workdir):
  tmp = tmp_path_factory.mktemp('cli')
  (tmp / 'empty').mkdir()
  (tmp / 'no_config').mkdir()
  (tmp / 'w.pt').write_bytes(b'not a checkpoint')
  Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp / 'a.png')
  edited = tmp / 'zero_features'  # a hand-edited record
  shutil.copytree(smoke_workdir, edited, ignore=shutil.ignore_patterns('run.lock'))
  config = json.loads((edited / 'config.json').read_text())
  config['model']['features'] = 0
  (edited / 'config.json').write_text(json.dumps(config))
  with hold(tmp / 'busy', 'training'):  # a live run holds it while the cases run
    yield tmp, cases(tmp, smoke_workdir)


COMMANDS = ('launch', 'jaxderain.convert', 'jaxderain.derain', 'jaxderain.study',
            'jaxderain.data.prepare', 'jaxderain.data.show', 'jaxderain.models')


@pytest.mark.parametrize('command', COMMANDS)
def test_each_bad_input_is_one_line_naming_it(table, command):
  tmp, all_cases = table
  runs = run_commands(command, *[args for args, _ in all_cases[command]])
  for (args, expected), run in zip(all_cases[command], runs):
    errors = [line for line in run.stderr.splitlines() if 'error' in line.lower()]
    assert run.returncode == 1 and len(errors) == 1, (args, run.stderr)
    assert errors[0].startswith('error: ') and expected in errors[0], (args, errors[0])
    assert 'Traceback' not in run.stderr, (args, run.stderr)
  assert not (tmp / 'w').exists() and not (tmp / 'c').exists()  # nothing left behind


def test_importing_the_cli_does_no_work_and_a_command_probes_the_flag_once(tmp_path):
  watch = (
      'import os, subprocess, sys\n'
      'started = []\n'
      'real = subprocess.Popen.__init__\n'
      'def spy(self, *a, **k):\n'
      '  started.append(a[0])\n'
      '  real(self, *a, **k)\n'
      'subprocess.Popen.__init__ = spy\n'
      'before = dict(os.environ)\n'
      'from jaxderain import cli\n'
      'assert not started and dict(os.environ) == before, (started, "import changed things")\n'
      'flag = cli.prepare(["x"])\n'
      'from jax._src import xla_bridge\n'
      'assert not xla_bridge.backends_are_initialized()\n'
      'print(len(started), flag, os.environ.get("XLA_FLAGS"))\n')
  env = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path)}
  env.pop('XLA_FLAGS', None)
  runs = [subprocess.run([sys.executable, '-c', watch], env=env, capture_output=True,
                         text=True, check=True).stdout.split() for _ in range(2)]
  assert runs[0][0] == '1' and runs[1][0] == '0'  # probed once, then read from the cache
  assert runs[0][1:] == runs[1][1:]
  if runs[0][1] != 'None':
    assert runs[0][1] == runs[0][2] == cpu_flags.FAST_CPU_FLAG
  assert (tmp_path / 'jaxderain' / 'xla_flags.json').is_file()
