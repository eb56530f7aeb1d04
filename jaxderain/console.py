"""Console logging for the command-line tools: our INFO lines, libraries' warnings only."""

import logging

from absl import logging as absl_logging

_CHATTY = ('/orbax/', '/tensorflow/')


def _keep(record) -> bool:
  return record.levelno >= logging.WARNING or not any(
      part in record.pathname for part in _CHATTY)


def quiet_library_logs() -> None:
  """Drop orbax's and TensorFlow's INFO chatter from absl's console handler (call from
  main(), after absl has set logging up)."""
  absl_logging.get_absl_handler().addFilter(_keep)
