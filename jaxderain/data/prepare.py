"""Build a background category or a paired rain set into TFDS array_record files.

  python -m jaxderain.data.prepare --category=urban100 --manual_dir=/data/Urban100 \\
      [--data_dir=DIR] [--strict]
  python -m jaxderain.data.prepare --paired=rain100l --manual_dir=/data/Rain100L

Categories: celeba, div2k, manga109, urban100, folder (div2k and celeba download when
--manual_dir is left out). Paired sets: rain100l, rain100h, folder (manual_dir holds
rainy/ and clean/). DIR defaults to $JAXDERAIN_DATA_DIR, else TFDS's default folder; an
earlier build of the same set there is removed first, then rebuilt. Progress and warnings
go to stderr; stdout gets one line saying what was written, where, and how to use it.
"""

import contextlib
import os
import sys

import tensorflow_datasets as tfds
from absl import flags, logging

from jaxderain import cli
from jaxderain.data import tfds_builders
from jaxderain.errors import ConfigError, DataError

_CATEGORY = flags.DEFINE_string(
    'category', None,
    f'Background category: {", ".join(tfds_builders.BACKGROUND_CATEGORIES)}.')
_PAIRED = flags.DEFINE_string(
    'paired', None, f'Paired rain set: {", ".join(tfds_builders.PAIRED_SETS)}.')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Folder of the source images (for --paired: rainy/ and clean/).')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Where to write; default $JAXDERAIN_DATA_DIR, else '
    f'{tfds.core.constants.DATA_DIR}.')
_STRICT = flags.DEFINE_bool('strict', False, 'Fail on the first unreadable image file '
                            'instead of skipping it with a warning.')


def main(argv):
  cli.no_arguments(argv)
  if bool(_CATEGORY.value) == bool(_PAIRED.value):
    raise ConfigError('pass exactly one of --category=NAME or --paired=NAME.')
  data_dir = (_DATA_DIR.value or os.environ.get('JAXDERAIN_DATA_DIR')
              or tfds.core.constants.DATA_DIR)
  if not flags.FLAGS['verbosity'].present:  # warnings (skipped files) and progress only
    logging.set_verbosity(logging.WARNING)
  tfds.display_progress_bar(True)
  try:
    with contextlib.redirect_stdout(sys.stderr):  # TFDS's own messages join the progress
      if _CATEGORY.value:
        builder = tfds_builders.prepare_category(_CATEGORY.value, _MANUAL_DIR.value,
                                                 data_dir, _STRICT.value)
      else:
        builder = tfds_builders.prepare_pairs(_PAIRED.value, _MANUAL_DIR.value, data_dir,
                                              _STRICT.value)
  except OSError as error:  # the disk (bad input raises a UserError)
    raise DataError(f'the build in {data_dir} failed ({error}): free space or pass a '
                    'writable --data_dir.') from None
  count = builder.info.splits[tfds_builders.SPLIT].num_examples
  if _CATEGORY.value:
    what, use = f'{count} images', f'load_prepared_category({_CATEGORY.value!r}, data_dir)'
  else:
    what, use = f'{count} pairs', f'load_prepared_pairs({_PAIRED.value!r}, data_dir)'
  print(f'Wrote {what} to {builder.data_dir}; use them with data_dir={data_dir} '
        f'(config.data_dir or JAXDERAIN_DATA_DIR), read by tfds_builders.{use}.')


if __name__ == '__main__':
  cli.run(main)
