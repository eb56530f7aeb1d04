"""Derain real photos with a trained model.

  python -m jaxderain.derain --workdir=runs/demo --input=photo.jpg --output=derained/
  python -m jaxderain.derain --workdir=runs/demo --input=photos/ --output=derained/

Restores the latest checkpoint of WORKDIR (built from WORKDIR/config.json) and writes
OUTPUT/<input stem>.png for each image: any size (overlapping tiles, streamed band by band
into the PNG, so memory grows by about one decoded image), any common format (EXIF
orientation applied; greyscale, alpha and 16-bit greyscale kept). A file that is not a
usable image (animated ones included) is reported by name and skipped (--strict stops
instead). Before any work: an output never lands on an input or on another output (it is
named <stem>_<suffix>.png instead), an existing file is replaced only with --overwrite, and
OUTPUT must be writable with room for the PNGs. A run stopped part way (SIGTERM: exit 143,
its partial file removed; or killed) resumes when rerun, keeping the outputs written.
"""

import ctypes
import json
import logging
import signal
import sys
import threading

from absl import flags

from jaxderain import cli, experiment
from jaxderain.errors import PREEMPTED_EXIT_CODE, ConfigError, DataError
from jaxderain.eval.photos import (check_output_folder, derain_files, plan,
                                   remove_stale_partials)

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run (launch.py --workdir).')
_INPUT = flags.DEFINE_string('input', None, 'An image file, or a folder of them.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for the derained PNGs.')
_TILE = flags.DEFINE_integer('tile', 256, 'Tile side in pixels (a multiple of 32).')
_OVERLAP = flags.DEFINE_integer('overlap', 32, 'Overlap of neighbouring tiles in pixels.')
_BATCH = flags.DEFINE_integer('batch', 4, 'Tiles per model call (memory grows with it).',
                              lower_bound=1)
_STRICT = flags.DEFINE_bool('strict', False, 'Stop at the first bad image file.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace output files that exist.')
flags.mark_flags_as_required(['workdir', 'input', 'output'])
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _unmap_large_blocks_when_freed() -> None:
  """glibc: give allocations of 1 MiB and more their own mappings, returned to the system
  when freed. By default glibc raises that threshold as such blocks are freed and keeps the
  freed memory in per-thread pools, so the model's per-call buffers (XLA's threads) pile
  up some 50 MB of resident memory over a large photo's hundreds of tile batches. A no-op
  where the C library has no mallopt."""
  try:
    ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1 << 20)
  except (OSError, AttributeError):
    pass


def _stop_on_sigterm() -> threading.Event:
  """SIGTERM leaves through the normal exit path (exit 143), so the PNG being written
  removes its partial file; the outputs written so far stay, and a rerun resumes. The
  returned event is set once SIGTERM came: the SystemExit the handler raises is lost when
  the signal lands in a finalizer (Python ignores exceptions there), so the caller checks
  the event between tile batches too."""
  stopped = threading.Event()

  def stop(signum, frame):
    del signum, frame
    if not stopped.is_set():
      print('jaxderain: derain stopped by SIGTERM; rerun the same command to resume.',
            file=sys.stderr)
    stopped.set()
    sys.exit(PREEMPTED_EXIT_CODE)

  signal.signal(signal.SIGTERM, stop)
  return stopped


def _exit_if_set(stopped: threading.Event) -> None:
  """Exit 143 if SIGTERM came (the handler's own exit may have been dropped)."""
  if stopped.is_set():
    sys.exit(PREEMPTED_EXIT_CODE)


def main(argv):
  cli.no_arguments(argv)
  stopped = _stop_on_sigterm()
  _unmap_large_blocks_when_freed()
  if _TILE.value % 32 or _TILE.value < 32 or not 0 <= _OVERLAP.value < _TILE.value // 2:
    raise ConfigError(f'--tile must be a positive multiple of 32 and --overlap in [0, '
                      f'tile/2); got tile={_TILE.value}, overlap={_OVERLAP.value}.')
  remove_stale_partials(_OUTPUT.value)
  pairs = plan(_INPUT.value, _OUTPUT.value, _OVERWRITE.value, _WORKDIR.value)
  if not pairs:  # every output is there from an earlier run
    print(json.dumps({'step': None, 'written': 0, 'skipped': {}, 'output': _OUTPUT.value}))
    return
  check_output_folder(_OUTPUT.value, [source for source, _ in pairs])
  predict, step = experiment.restore_predictor(_WORKDIR.value)
  logging.info('Derain %d image(s) with %s at step %d.', len(pairs), _WORKDIR.value, step)

  def predict_until_stopped(tiles):
    _exit_if_set(stopped)
    return predict(tiles)

  summary = derain_files(predict_until_stopped, pairs, _TILE.value, _OVERLAP.value,
                         _BATCH.value, _STRICT.value, _WORKDIR.value)
  _exit_if_set(stopped)
  print(json.dumps({'step': step, 'written': len(summary['written']),
                    'skipped': summary['skipped'], 'output': _OUTPUT.value}))
  if not summary['written']:
    raise DataError('no image could be derained (see the skipped files above).')


if __name__ == '__main__':
  cli.run(main)
