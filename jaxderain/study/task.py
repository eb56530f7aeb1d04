"""One task of a sweep run by an engine (study run --engine=ray): train and evaluate the
given points in this process, exactly as the sequential sweep does.

  python -m jaxderain.study.task --out=DIR --todo=POINTS  # POINTS: grids.encode(points)

Exit status: 0 when every point is done; 1 when a point could not run (a user error,
recorded in its failed.json); 143 when stopped by SIGTERM (its checkpoint saved); any
other status is a crash.
"""

from absl import flags

from jaxderain import cli
from jaxderain.errors import DataError
from jaxderain.study import grids, sweep

_OUT = flags.DEFINE_string('out', None, 'Study folder.', required=True)
_POINTS = flags.DEFINE_string('todo', None, 'The points, as grids.encode writes them.',
                              required=True)
_TOGETHER = flags.DEFINE_integer('together', 1, 'As for study run.', lower_bound=1)


def main(argv):
  cli.no_arguments(argv)
  summary = sweep.run(grids.decode(_POINTS.value), _OUT.value, together=_TOGETHER.value)
  if summary['failed']:
    raise DataError(f'{len(summary["failed"])} point(s) failed: '
                    f'{", ".join(sorted(summary["failed"]))} (failed.json says why).')


if __name__ == '__main__':
  cli.run(main)
