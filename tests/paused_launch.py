"""launch.py with one pause at a fixed moment, so that a test can signal or kill the run
there rather than race it:

  python tests/paused_launch.py MOMENT STEP MARKER [launch.py flags]

MOMENT, for checkpoint STEP (MARKER is created when the pause begins):
- saved: the main thread, once the save is handed to orbax, waits until SIGTERM has been
  handled (one process), or until the file MARKER.go exists (several processes, where
  jax.distributed's preemption sync takes SIGTERM).
- written: orbax has written the checkpoint into its temporary folder; the rename that
  commits it waits for ever (the run blocks at its next save).
- committed: the checkpoint is renamed into place; the saving thread then waits for ever.
"""

import os
import pathlib
import signal
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxderain import launch  # pylint: disable=g-import-not-at-top
from jaxderain.train import checkpoints  # pylint: disable=g-import-not-at-top

TEMPORARY = '.orbax-checkpoint-tmp'


def pause_after_save(step: int, marker: pathlib.Path):
  """Wrap checkpoints.save: after saving `step`, wait for SIGTERM (or MARKER.go)."""
  handled = threading.Event()
  real_signal, real_save = signal.signal, checkpoints.save

  def chained(signum, handler):
    if signum == signal.SIGTERM and callable(handler):
      inner = handler
      handler = lambda *args: (inner(*args), handled.set())
    return real_signal(signum, handler)

  def save(manager, saved_step, *args, **kwargs):
    real_save(manager, saved_step, *args, **kwargs)
    if saved_step == step:
      marker.touch()
      go = marker.with_name(marker.name + '.go')
      while not handled.is_set() and not go.exists():
        time.sleep(0.01)

  signal.signal, checkpoints.save = chained, save


def pause_at_rename(step: int, marker: pathlib.Path, committed: bool):
  """Wrap os.rename: hold orbax's thread before (or after) it commits checkpoint `step`."""
  real_rename = os.rename

  def rename(source, target, *args, **kwargs):
    ours = TEMPORARY in str(source) and pathlib.Path(target).name == str(step)
    if ours and not committed:
      marker.touch()
      threading.Event().wait()
    real_rename(source, target, *args, **kwargs)
    if ours:
      marker.touch()
      threading.Event().wait()

  os.rename = rename


def main():
  moment, step, marker = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
  if moment == 'saved':
    pause_after_save(step, marker)
  else:
    pause_at_rename(step, marker, committed=moment == 'committed')
  sys.argv = ['launch.py', *sys.argv[4:]]
  launch.run()


if __name__ == '__main__':
  main()
