"""Console logging for the command-line tools.

At the default verbosity the console shows the project's INFO lines (a progress line
per log interval, the evaluation summary) and libraries' warnings; orbax's, TensorFlow's
and asyncio's error tracebacks are dropped, because the failure they report reaches the
user as the one-line error naming it. `--verbosity=1` (absl's flag) shows everything.
"""

import logging
import pathlib
import sys

from absl import logging as absl_logging

_PROJECT = str(pathlib.Path(__file__).resolve().parents[1])  # jaxderain/, launch.py
_CHATTY = ('/orbax/', '/tensorflow/', '/asyncio/')  # orbax saves on asyncio


def _keep(record) -> bool:
  if absl_logging.get_verbosity() >= 1:
    return True
  if record.pathname.startswith(_PROJECT) and '/site-packages/' not in record.pathname:
    return True
  if any(part in record.pathname for part in _CHATTY):
    return logging.WARNING <= record.levelno < logging.ERROR
  return record.levelno >= logging.WARNING


def _quiet_closed_loop_errors() -> None:
  """After a failed checkpoint save, tensorstore's C++ callbacks may still try to reach
  orbax's closed asyncio loop, and the binding prints each RuntimeError('Event loop is
  closed') through sys.excepthook. They are echoes of the failure already reported: keep
  them off the console, pass every other exception on."""
  previous = sys.excepthook

  def hook(kind, value, trace):
    if kind is RuntimeError and str(value) == 'Event loop is closed':
      logging.debug('Ignored after a failure: %s', value)
      return
    previous(kind, value, trace)

  sys.excepthook = hook


class _ShortFormatter(logging.Formatter):
  """'12:03:04 message', warnings and errors with their level: the default console."""

  def format(self, record):
    line = super().format(record)
    if record.levelno == logging.INFO:
      return line
    time_of_day, _, message = line.partition(' ')
    return f'{time_of_day} {record.levelname}: {message}'


def quiet_library_logs() -> None:
  """Filter absl's console handler as the module docstring says, with short lines at
  the default verbosity (call from main(), after absl has set logging up)."""
  handler = absl_logging.get_absl_handler()
  handler.addFilter(_keep)
  if absl_logging.get_verbosity() < 1:
    handler.setFormatter(_ShortFormatter('%(asctime)s %(message)s', '%H:%M:%S'))
  _quiet_closed_loop_errors()
