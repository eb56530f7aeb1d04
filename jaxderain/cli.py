"""What every command line shares: the fast CPU flag, a quiet console and one line for
each bad input.

Start a command with `cli.run(main)` instead of absl's app.run. Importing this module does
nothing; `run` first applies the fast CPU flag (cpu_flags.py; JAX starts its backend only
when a command first computes) and quiets TensorFlow's start-up notices, then:
- a bad flag (unknown, wrong type, a --config.FIELD that names no field, a bad grid
  point) prints `error: <what and the fix>` and exits 1;
- a UserError (jaxderain/errors.py) raised by `main` does the same, and so does any
  OSError that reaches it (the path, the errno's meaning and what to do);
- Preempted (SIGTERM, checkpoint saved) exits 143, so schedulers requeue the command;
- any other exception is a bug and keeps its traceback.
The console shows the project's INFO lines and libraries' warnings; `--verbosity=1`
brings every library's log back.
"""

from __future__ import annotations

import errno
import functools
import os
import sys

from absl import app, flags

from jaxderain import console, cpu_flags
from jaxderain.errors import (PREEMPTED_EXIT_CODE, ConfigError, Preempted, SaveError,
                              UserError, first_line)


def verbose_requested(argv=None) -> bool:
  """Whether the command line asks for absl's full log (--verbosity / -v above 0)."""
  for arg in (sys.argv if argv is None else argv)[1:]:
    name, _, value = arg.lstrip('-').partition('=')
    if name in ('v', 'verbosity') and value not in ('', '0', '-1'):
      return True
  return False


def prepare(argv=None, environ=os.environ) -> str | None:
  """What a command does before anything else: the fast CPU flag (returned when applied)
  and, unless a verbose log is asked for, TensorFlow's start-up notices off (TensorFlow
  only builds data sets here; oneDNN changes nothing else: the models run in JAX)."""
  if not verbose_requested(argv):
    environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
    environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
  return cpu_flags.apply_fast_cpu_flag(environ)


def _error_line(error: BaseException) -> str:
  """absl's flag errors end with the useful line ('FATAL Flags parsing error: ...')."""
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  line = lines[-1] if lines else type(error).__name__
  kind, separator, message = line.partition(': ')  # 'jaxderain.errors.ConfigError: ...'
  return message if separator and kind.split('.')[-1].endswith('Error') else line


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with any bad flag reported as one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    message = _error_line(error)
  except UserError as error:  # raised by a config file while it is loaded
    message = str(error)
  except (AttributeError, KeyError) as error:  # --config.FIELD naming no field
    message = (f'a --config.FIELD override names no field of the config ({error}); the '
               'fields are listed in configs/grid.py.')
  sys.exit(f'error: {message} (see --helpshort)')


def run_main(main, argv):
  """`main(argv)` with the handling of the module docstring (flags already parsed)."""
  console.quiet_library_logs()
  try:
    return main(argv)
  except Preempted as stop:
    print(f'jaxderain: {stop}', file=sys.stderr)
    sys.exit(PREEMPTED_EXIT_CODE)
  except SaveError as error:
    # Writes of the failed save may still be in flight in tensorstore's threads; at
    # interpreter shutdown they would echo the failure as tracebacks. Leave at once.
    print(f'error: {error}', file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access
  except UserError as error:
    sys.exit(f'error: {error}')
  except OSError as error:  # the operating system refused: one line, whatever the errno
    sys.exit(f'error: {os_problem(error)}')


# What to do about the operating system's refusals, by errno.
_OS_FIXES = {
    errno.ENOSPC: 'free disk space there, or pass a path on a disk with room',
    errno.EDQUOT: 'free space within your quota, or pass a path on another disk',
    errno.EROFS: 'the filesystem is read-only: pass a path on a writable one',
    errno.EACCES: 'fix the permissions (chmod, chown) or pass a path you can use',
    errno.EPERM: 'fix the permissions (chmod, chown) or pass a path you can use',
    errno.ENOENT: 'check the path: it (or a folder above it) does not exist',
    errno.ENOTDIR: 'a part of the path is a file, not a folder: check the path',
    errno.EISDIR: 'the path is a folder where a file is needed: check the path',
    errno.EMFILE: 'too many open files: raise the limit (ulimit -n) and rerun',
}


def os_problem(error: OSError) -> str:
  """An OSError as one line: the path, the errno's meaning and what to do."""
  where = ' -> '.join(str(p) for p in (error.filename, error.filename2) if p is not None)
  meaning = os.strerror(error.errno) if error.errno else first_line(error)
  name = errno.errorcode.get(error.errno, type(error).__name__)
  fix = _OS_FIXES.get(error.errno, 'check the path and the disk, then rerun')
  return f'{where or "a file operation"}: {meaning} ({name}): {fix}.'


def run(main) -> None:
  """Run `main(argv)` as a command line: `prepare`, then absl's app.run with the handling
  above."""
  prepare()
  app.run(functools.partial(run_main, main), flags_parser=parse_flags)


def no_arguments(argv: list[str]) -> None:
  """Refuse positional arguments of a command that takes flags only."""
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments {" ".join(argv[1:])}: this command takes '
                      '--flags only (see --helpshort).')
