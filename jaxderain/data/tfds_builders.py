"""TFDS builders for background categories and paired rain sets, stored as array_record.

Build once (`python -m jaxderain.data.prepare`, or `prepare_category` / `prepare_pairs`),
then read with `load_prepared_category` / `load_prepared_pairs`: random access through
`tfds.data_source`, PNG decoded by PIL, no TensorFlow imported at read or build time.

Layout under DATA_DIR: `jaxderain_backgrounds/CONFIG/1.0.0/` and
`jaxderain_paired_rain/CONFIG/1.0.0/`, one split `full` holding every image (the project
splits train/test by name itself). Images are decoded once by `images.load_image` (so its
colour conversions apply) and stored as lossless PNG: they read back bit-exactly as
uint8 (H, W, 3). A file that cannot be read is logged by name and skipped; `strict=True`
makes it fatal.

The `folder` configs hold whichever folder was prepared last under that name.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib

from etils import epath
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from jaxderain.data.images import ImageError, image_files, load_image, paired_files
from jaxderain.errors import ConfigError, DataError

SPLIT = 'full'
BACKGROUND_CATEGORIES = ('celeba', 'div2k', 'manga109', 'urban100', 'folder')
PAIRED_SETS = ('rain100l', 'rain100h', 'folder')

# Archives of the categories that can be downloaded; each extracts to a folder named as
# its key. DIV2K: the official high-resolution train and validation PNGs (as TFDS's own
# `div2k` builder fetches them). CelebA: the aligned and cropped faces, from the Google
# Drive address TFDS's own `celeb_a` builder downloads `img_align_celeba` from.
_ONLINE = {
    'div2k': {
        'DIV2K_train_HR': 'https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip',
        'DIV2K_valid_HR': 'https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip',
    },
    'celeba': {
        'img_align_celeba': ('https://drive.google.com/uc?export=download&'
                             'id=0B7EVK8r0v71pZjFTYXZWM3FlRnM'),
    },
}
_DESCRIPTIONS = {
    'celeba': 'Faces: CelebA aligned and cropped.',
    'div2k': 'Natural scenes: DIV2K high-resolution train + validation.',
    'manga109': 'Comics: Manga109 pages.',
    'urban100': 'Buildings: Urban100.',
    'folder': 'Any folder of image files (manual_dir).',
    'rain100l': 'Rain100L test pairs (light rain).',
    'rain100h': 'Rain100H test pairs (heavy rain).',
}


def _image_feature() -> tfds.features.Image:
  return tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format='png')


def _png(image: np.ndarray) -> bytes:
  """uint8 (H, W, 3) as lossless PNG bytes, encoded by PIL (not TensorFlow)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def _configs(names) -> list[tfds.core.BuilderConfig]:
  return [tfds.core.BuilderConfig(name=n, description=_DESCRIPTIONS[n]) for n in names]


class _ImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared by both builders: array_record output and the `strict` option."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  # This file, as TFDS would find it: its own lookup imports `importlib_resources`, which
  # TFDS 4.9.10 does not install on Python >= 3.9 (tensorflow/datasets#11212).
  code_path = epath.Path(__file__)

  def __init__(self, *, strict: bool = False, **kwargs):
    """strict: a file that cannot be read fails the build instead of being skipped."""
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)
    self._strict = strict

  def _load(self, path: pathlib.Path) -> np.ndarray | None:
    """The image at `path`, or None (logged by name) if unreadable and not strict."""
    try:
      return load_image(path)
    except ImageError as error:
      if self._strict:
        raise
      logging.warning('Skipping %s', error)
      return None


class Backgrounds(_ImageBuilder):
  """Background categories: `image` uint8 (H, W, 3) PNG and `name`, the source file name.

  manga109, urban100, folder: the image files directly inside manual_dir.
  div2k, celeba: manual_dir when it holds files; otherwise downloaded from `_ONLINE`
  (that online path is untested here: the development machines have no network).
  """

  name = 'jaxderain_backgrounds'
  BUILDER_CONFIGS = _configs(BACKGROUND_CATEGORIES)
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Put the image files of the category directly inside '
                                  'manual_dir (e.g. --manual_dir=/data/Urban100/HR).')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({'image': _image_feature(),
                                             'name': tfds.features.Text()}))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config.name
    if config in _ONLINE and not _has_files(dl_manager):
      extracted = dl_manager.download_and_extract(_ONLINE[config])
      files = [f for key in _ONLINE[config] for f in image_files(extracted[key] / key)]
    else:
      files = image_files(dl_manager.manual_dir)
    return {SPLIT: self._generate_examples(files)}

  def _generate_examples(self, files: list[pathlib.Path]):
    count = 0
    for path in files:
      image = self._load(path)
      if image is not None:
        count += 1
        yield path.name, {'image': _png(image), 'name': path.name}
    if not count:
      raise ImageError(f'None of the {len(files)} image files of {files[0].parent} could be '
                       'read (see the warnings above): fix or replace them.')


class PairedRain(_ImageBuilder):
  """Paired rain test sets: `rainy`, `clean` uint8 (H, W, 3) PNG and `name`.

  manual_dir holds rainy/X and clean/X with the same file names and sizes.
  """

  name = 'jaxderain_paired_rain'
  BUILDER_CONFIGS = _configs(PAIRED_SETS)
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Lay out manual_dir as rainy/N.png with clean/N.png '
                                  '(same file names in both sub-folders).')

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'rainy': _image_feature(), 'clean': _image_feature(),
        'name': tfds.features.Text()}))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    return {SPLIT: self._generate_examples(paired_files(dl_manager.manual_dir))}

  def _generate_examples(self, pairs: list[tuple[str, pathlib.Path, pathlib.Path]]):
    count = 0
    for name, rainy_path, clean_path in pairs:
      rainy, clean = self._load(rainy_path), self._load(clean_path)
      if rainy is None or clean is None:
        continue
      if rainy.shape != clean.shape:
        raise ImageError(f'{rainy_path} is {rainy.shape[:2]} but {clean_path} is '
                         f'{clean.shape[:2]}: a pair must have one size.')
      count += 1
      yield name, {'rainy': _png(rainy), 'clean': _png(clean), 'name': name}
    if not count:
      raise ImageError(f'None of the {len(pairs)} pairs of {pairs[0][1].parents[1]} could '
                       'be read (see the warnings above): fix or replace them.')


def _has_files(dl_manager: tfds.download.DownloadManager) -> bool:
  """Whether manual_dir exists and holds anything (TFDS raises AssertionError if not)."""
  try:
    dl_manager.manual_dir  # pylint: disable=pointless-statement
  except AssertionError:
    return False
  return True


def _check_writable(data_dir) -> None:
  path = pathlib.Path(data_dir)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise DataError(f'data_dir {path} cannot be created ({error.strerror}): pass a '
                    'writable folder as data_dir.') from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise DataError(f'data_dir {path} is not writable: pass a writable folder as '
                    'data_dir.')


def _prepare(builder_cls, config: str, manual_dir, data_dir,
             strict: bool) -> tfds.core.DatasetBuilder:
  """Builds one config into data_dir, removing an earlier build first. No GCS lookups;
  the network is used only by div2k/celeba when manual_dir has no files."""
  _check_writable(data_dir)
  builder = builder_cls(config=config, data_dir=os.fspath(data_dir), strict=strict)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir) if manual_dir else None,
      try_download_gcs=False,
      download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS))
  return builder


def prepare_category(name: str, manual_dir, data_dir,
                     strict: bool = False) -> tfds.core.DatasetBuilder:
  """Builds background category `name` from manual_dir (a folder of image files) into
  data_dir, replacing an earlier build; returns the prepared builder.

  div2k and celeba accept manual_dir=None to download instead (needs network).
  """
  if name not in BACKGROUND_CATEGORIES:
    raise ConfigError(f'Unknown background category {name!r}: use one of '
                     f'{", ".join(BACKGROUND_CATEGORIES)}.')
  if manual_dir is None:
    if name not in _ONLINE:
      raise ConfigError(f'Category {name!r} is built from a folder of its images: pass '
                        'it as manual_dir.')
  else:
    image_files(manual_dir)  # a clear error if missing, not a folder, or without images
  return _prepare(Backgrounds, name, manual_dir, data_dir, strict)


def prepare_pairs(name: str, manual_dir, data_dir,
                  strict: bool = False) -> tfds.core.DatasetBuilder:
  """Builds paired set `name` from manual_dir (rainy/X with clean/X) into data_dir,
  replacing an earlier build; returns the prepared builder."""
  if name not in PAIRED_SETS:
    raise ConfigError(f'Unknown paired set {name!r}: use one of {", ".join(PAIRED_SETS)}.')
  if manual_dir is None:
    raise ConfigError(f'Paired set {name!r} is built from a folder holding rainy/ and '
                      'clean/: pass it as manual_dir.')
  paired_files(manual_dir)  # a clear error before anything is written
  return _prepare(PairedRain, name, manual_dir, data_dir, strict)


def _data_source(builder_cls, config: str, data_dir):
  """The `full` split of a prepared config as a random-access sequence, else None."""
  if not data_dir or config not in builder_cls.builder_configs:
    return None
  # TFDS's layout DATA_DIR/NAME/CONFIG/VERSION/; checked first so that asking for a
  # category that was never prepared stays silent.
  config_dir = pathlib.Path(data_dir) / builder_cls.name / config
  if not any(config_dir.glob('*/dataset_info.json')):
    return None
  return tfds.data_source(f'{builder_cls.name}/{config}', split=SPLIT,
                          data_dir=os.fspath(data_dir), download=False)


def _read_all(source) -> list[dict]:
  """Every example; images as writable uint8 (H, W, 3) copies, names as str."""
  examples = source.__getitems__(range(len(source)))
  return [{k: v.decode() if k == 'name' else np.array(v) for k, v in e.items()}
          for e in examples]


def load_prepared_category(name: str, data_dir) -> dict[str, np.ndarray] | None:
  """{file name: uint8 (H, W, 3)} of a category prepared in data_dir, sorted by name.

  None when data_dir is empty/None, `name` is not a category of `Backgrounds`, or it was
  not prepared there.
  """
  source = _data_source(Backgrounds, name, data_dir)
  if source is None:
    return None
  return {e['name']: e['image'] for e in sorted(_read_all(source), key=lambda e: e['name'])}


def load_prepared_pairs(
    name: str, data_dir) -> tuple[list[str], list[np.ndarray], list[np.ndarray]] | None:
  """(names, rainy, clean) of a paired set prepared in data_dir, ordered by number as
  `testsets.paired_folder`; images uint8 (H, W, 3). None when not prepared there."""
  source = _data_source(PairedRain, name, data_dir)
  if source is None:
    return None
  examples = sorted(_read_all(source), key=lambda e: (len(e['name']), e['name']))
  return ([e['name'] for e in examples], [e['rainy'] for e in examples],
          [e['clean'] for e in examples])
