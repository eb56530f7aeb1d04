"""Print a JSON summary of one architecture: python -m jaxderain.models --arch=resnet."""

import json
import sys

import jax
import jax.numpy as jnp
from absl import app, flags

from jaxderain import models

_ARCH = flags.DEFINE_string('arch', 'resnet', 'Architecture name.')
_HEIGHT = flags.DEFINE_integer('height', 64, 'Input height.')
_WIDTH = flags.DEFINE_integer('width', 64, 'Input width.')


def main(argv):
  del argv
  try:
    model = models.create(_ARCH.value, {}, seed=0)
  except ValueError as error:
    sys.exit(f'error: {error}')
  model.eval()  # inference shapes; BatchNorm statistics are not updated
  shape = (1, _HEIGHT.value, _WIDTH.value, 3)
  out = jax.eval_shape(lambda x: models.get(_ARCH.value).image(model(x)),
                       jax.ShapeDtypeStruct(shape, jnp.float32))
  print(json.dumps({'arch': _ARCH.value, 'params': models.num_params(model),
                    'input_shape': list(shape), 'output_shape': list(out.shape)}))


if __name__ == '__main__':
  app.run(main)
