"""Runs one command line on several argument lists in one process, for test_cli.py.

  python tests/cli_cases.py MODULE '[["--flag=1"], ...]'

MODULE is launch (launch.py) or a module (jaxderain.derain). Each list goes through the
command's own flag parsing and main, as `cli.run` does; prints a JSON list of
{"code": exit code, "stderr": what the command wrote to stderr}.
"""

import contextlib
import importlib
import io
import json
import runpy
import sys

from jaxderain import cli  # pylint: disable=g-bad-import-order (before JAX)

from absl import flags  # pylint: disable=g-import-not-at-top


def run_case(main, argv: list[str]) -> dict:
  flags.FLAGS.unparse_flags()
  stderr = io.StringIO()
  code = 0
  with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
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
  return {'code': code, 'stderr': stderr.getvalue()}


def main():
  module, cases = sys.argv[1], json.loads(sys.argv[2])
  if module == 'launch':
    entry = runpy.run_path('launch.py', run_name='launch')['main']
  else:  # a module, or a package run as `python -m PACKAGE`
    found = importlib.import_module(module)
    entry = getattr(found, 'main', None) or importlib.import_module(f'{module}.__main__').main
  print(json.dumps([run_case(entry, argv) for argv in cases]))


if __name__ == '__main__':
  main()
