"""Console logging for the command-line tools: our INFO lines, libraries' warnings only."""

import logging

from absl import logging as absl_logging

_CHATTY = ('/orbax/', '/tensorflow/', '/asyncio/')  # orbax saves on asyncio


def _keep(record) -> bool:
  if not any(part in record.pathname for part in _CHATTY):
    return True
  return logging.WARNING <= record.levelno < logging.ERROR


def quiet_library_logs() -> None:
  """Drop orbax's and TensorFlow's INFO chatter and their error tracebacks from absl's
  console handler (call from main(), after absl has set logging up): a failure they
  report reaches the user as the one-line error that names it (e.g. a checkpoint save
  that failed, with its cause)."""
  absl_logging.get_absl_handler().addFilter(_keep)
