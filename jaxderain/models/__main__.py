"""Print a JSON summary of one architecture: python -m jaxderain.models --arch=resnet
(--overview: every parameter's shape and statistics instead, clu's table)."""

import json

import jax
import jax.numpy as jnp
from absl import flags

from jaxderain import cli, models

_ARCH = flags.DEFINE_string('arch', 'resnet', 'Architecture name.')
_HEIGHT = flags.DEFINE_integer('height', 64, 'Input height.')
_WIDTH = flags.DEFINE_integer('width', 64, 'Input width.')
_OVERVIEW = flags.DEFINE_bool('overview', False, 'Print the parameter table instead.')


def main(argv):
  cli.no_arguments(argv)
  model = models.create(_ARCH.value, {}, seed=0)
  model.eval()  # inference shapes; BatchNorm statistics are not updated
  if _OVERVIEW.value:
    print(models.parameter_table(model))
    return
  shape = (1, _HEIGHT.value, _WIDTH.value, 3)
  out = jax.eval_shape(lambda x: models.get(_ARCH.value).image(model(x)),
                       jax.ShapeDtypeStruct(shape, jnp.float32))
  print(json.dumps({'arch': _ARCH.value, 'params': models.num_params(model),
                    'input_shape': list(shape), 'output_shape': list(out.shape)}))


if __name__ == '__main__':
  cli.run(main)
