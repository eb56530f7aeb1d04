"""Runs one command line on several argument lists in one process, for test_cli.py.

  python tests/cli_cases.py MODULE '[["--flag=1"], ...]'

MODULE is launch (launch.py) or a module (jaxderain.derain). Each list goes through the
command's own flag parsing and main, as `cli.run` does; prints a JSON list of
{"code": exit code, "stdout", "stderr": what the command printed and logged (warnings)}.
One process for many runs saves each run's start-up (importing JAX and TensorFlow).
"""

import contextlib
import importlib
import io
import json
import runpy
import sys

from absl import flags
from absl import logging as absl_logging

from jaxderain import cli


def run_case(main, argv: list[str]) -> dict:
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)  # a config file's override flags: defined anew per parse
  sys.argv = ['command', *argv]  # where ml_collections looks for --config.FIELD overrides
  stderr, stdout = io.StringIO(), io.StringIO()
  code = 0
  console = absl_logging.get_absl_handler().python_handler
  console.stream = stderr  # the log lines a user sees on stderr
  with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
    try:
      cli.run_main(main, cli.parse_flags(['command', *argv]))
    except SystemExit as stop:
      if isinstance(stop.code, str):
        print(stop.code, file=sys.stderr)
        code = 1
      else:
        code = stop.code or 0
    except Exception as error:  # pylint: disable=broad-except
      print(f'Traceback: {type(error).__name__}: {error}', file=sys.stderr)
      code = 'traceback'
  return {'code': code, 'stdout': stdout.getvalue(), 'stderr': stderr.getvalue()}


def main():
  module, cases = sys.argv[1], json.loads(sys.argv[2])
  cli.prepare(['command'])
  absl_logging.use_absl_handler()

  if module == 'launch':
    entry = runpy.run_path('launch.py', run_name='launch')['main']
  else:  # a module, or a package run as `python -m PACKAGE`
    found = importlib.import_module(module)
    entry = getattr(found, 'main', None) or importlib.import_module(f'{module}.__main__').main
  print(json.dumps([run_case(entry, argv) for argv in cases]))


if __name__ == '__main__':
  main()
