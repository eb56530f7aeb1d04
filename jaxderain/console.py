"""Console logging for the command-line tools: our INFO lines, libraries' warnings only."""

import logging
import sys

from absl import logging as absl_logging

_CHATTY = ('/orbax/', '/tensorflow/', '/asyncio/')  # orbax saves on asyncio


def _keep(record) -> bool:
  if not any(part in record.pathname for part in _CHATTY):
    return True
  return logging.WARNING <= record.levelno < logging.ERROR


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


def quiet_library_logs() -> None:
  """Drop orbax's and TensorFlow's INFO chatter and their error tracebacks from absl's
  console handler (call from main(), after absl has set logging up): a failure they
  report reaches the user as the one-line error that names it (e.g. a checkpoint save
  that failed, with its cause)."""
  absl_logging.get_absl_handler().addFilter(_keep)
  _quiet_closed_loop_errors()
