"""The README's derain examples: photos that ship with scikit-image (held out from the
default training set), with rain added, through `python -m jaxderain.derain`.

  python docs/derain_examples.py --workdir=runs/demo --figure=docs/derain_examples.png

Writes the rainy inputs and the derained outputs under --scratch, then a panel:
rainy | derained | clean, one row per photo and rain.
"""

import pathlib
import subprocess
import sys


import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import skimage.data
from absl import app, flags
from PIL import Image

from jaxderain import rain

_WORKDIR = flags.DEFINE_string('workdir', 'runs/demo', 'A trained run.')
_FIGURE = flags.DEFINE_string('figure', 'docs/derain_examples.png', 'Panel PNG.')
_SCRATCH = flags.DEFINE_string('scratch', 'runs/derain_examples', 'Inputs and outputs.')
_TILE = flags.DEFINE_integer('tile', 192, 'Panel tile size (the photos are cropped square).')

PHOTOS = {'coffee': skimage.data.coffee, 'chelsea': skimage.data.chelsea}
RAINS = {'medium (training)': rain.TRAINING_RANGES['medium'], 'unseen': rain.UNSEEN_RANGE}


def main(argv):
  del argv
  # Imported here: jaxderain.data.show defines flags of its own (a required --out).
  from jaxderain.data.show import panel  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(_FIGURE.value)
  inputs = pathlib.Path(_SCRATCH.value) / 'rainy'
  outputs = pathlib.Path(_SCRATCH.value) / 'derained'
  inputs.mkdir(parents=True, exist_ok=True)
  clean = {}
  for i, (photo, load) in enumerate(PHOTOS.items()):
    image = load()
    side = min(image.shape[:2])
    image = image[:side, :side]
    for j, (rain_name, rain_range) in enumerate(RAINS.items()):
      layer = np.asarray(rain.synthesize(jax.random.key(10 * i + j), 1, side, side,
                                         rain_range))[0]
      rainy = np.clip(image / 255.0 + layer, 0, 1)
      name = f'{photo}_{rain_name.split()[0]}'
      Image.fromarray((rainy * 255 + 0.5).astype(np.uint8)).save(inputs / f'{name}.png')
      clean[name] = (f'{photo}, {rain_name}', image)
  subprocess.run([sys.executable, '-m', 'jaxderain.derain', f'--workdir={_WORKDIR.value}',
                  f'--input={inputs}', f'--output={outputs}'], check=True)
  size = _TILE.value
  tile = lambda path_or_array: np.asarray(
      (Image.open(path_or_array) if isinstance(path_or_array, pathlib.Path)
       else Image.fromarray(path_or_array)).convert('RGB').resize((size, size), Image.LANCZOS))
  rows = [(label, np.stack([tile(inputs / f'{name}.png'), tile(outputs / f'{name}.png'),
                            tile(image)]))
          for name, (label, image) in clean.items()]
  panel([(label.replace(', ', '\n'), tiles) for label, tiles in rows]).save(out)
  print(out)


if __name__ == '__main__':
  app.run(main)
