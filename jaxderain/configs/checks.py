"""A config checked before any work, and read into the objects it names (`resolve`).

Every field's type and range come from the schema (configs/grid.py); `resolve` adds what
a field alone cannot say: the batch against the devices, the model options against the
architecture, the rain recipe, the shifted rains, the dtype and the loss.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxderain import models, rain
from jaxderain.configs import grid
from jaxderain.data.backgrounds import BackgroundSpec
from jaxderain.data.testsets import TestSpec
from jaxderain.errors import ConfigError
from jaxderain.rain import shifts
from jaxderain.train.step import make_optimizer

COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Resolved:
  """The objects a checked config names: its backgrounds (category and background set
  B) and test sets, its architecture (models registry) and loss, the training rain R's
  range, the shifted test rains, the compute dtype and the optimizer (Adam,
  cosine-annealed over total_steps)."""
  backgrounds: BackgroundSpec
  tests: TestSpec
  architecture: models.Architecture
  loss: Callable
  rain_range: rain.RainRange
  rain_shifts: list[shifts.ShiftedRain]
  compute_dtype: Any  # jnp.float32 or jnp.bfloat16
  optimizer: optax.GradientTransformation


def rain_range(config) -> rain.RainRange:
  """The training rain of config.rain (a RainRange's fields)."""
  fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v
            for k, v in config.rain.to_dict().items()}
  try:
    return rain.RainRange(**fields)
  except (TypeError, ValueError) as error:
    raise ConfigError(f'config.rain is not a valid rain range: {error}') from None


def check_model_options(config) -> None:
  """config.model must hold options of config.arch (a changed --config.arch keeps the
  grid point's options of the other architecture), and its counts and sizes (integers)
  must be positive."""
  for name, value in config.model.items():
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
      raise ConfigError(f'config.model.{name} must be positive, got {value!r}: set '
                        f'--config.model.{name} (a trained run records it in '
                        'WORKDIR/config.json).')
  build = models.get(config.arch).build
  parameters = inspect.signature(build.__init__ if inspect.isclass(build) else build).parameters
  accepted = {n for n, p in parameters.items() if n not in ('self', 'rngs') and p.kind in (
      p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  unknown = sorted(set(config.model) - accepted)
  if unknown:
    raise ConfigError(
        f'config.model holds options {config.arch} does not take ({", ".join(unknown)}): '
        'pick the architecture in the grid point, which brings its own options '
        f'(--config=configs/grid.py:{config.arch},{config.rain_range},{config.num_patches}'
        f',scale={config.scale}), rather than overriding --config.arch.')


def check_batch_splits(config) -> None:
  """Training splits each batch over every device: fail unless it divides evenly."""
  devices, processes = jax.device_count(), jax.process_count()
  if config.batch_size % devices:
    of_all = f' of the {processes} processes' if processes > 1 else ''
    raise ConfigError(f'batch_size {config.batch_size} is not divisible by the {devices} '
                      f'devices{of_all}: set --config.batch_size to a multiple of {devices}.')


def resolve(config, training: bool = False) -> Resolved:
  """Fail before any work on values that cannot run (with `training`, also a batch that
  does not split over the devices); else the objects `config` names."""
  grid.SCHEMA.check(config)
  if training:
    check_batch_splits(config)
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f'compute_dtype {config.compute_dtype!r} is not one of '
                      f'{", ".join(COMPUTE_DTYPES)}: set --config.compute_dtype to one.')
  training_rain = rain_range(config)
  check_model_options(config)
  architecture = models.get(config.arch)
  try:
    loss = architecture.loss(config.loss)
  except ValueError as error:
    raise ConfigError(f'config.loss: {error}') from None
  try:
    shifted = shifts.family(tuple(config.eval.rain_shifts))
  except ValueError as error:
    raise ConfigError(f'config.eval.rain_shifts: {error}') from None
  optimizer = make_optimizer(config.learning_rate, config.b1, config.b2, config.total_steps,
                             config.final_learning_rate)
  backgrounds = BackgroundSpec(
      config.category, config.data_dir or None, config.test_fraction, config.strict_images,
      (config.patch_size, config.eval.image_size) if config.upscale_small_images else None,
      config.num_patches, config.patch_size, config.seed)
  extra = tuple(config.eval.extra_categories)
  if not all(isinstance(category, str) and category for category in extra):
    raise ConfigError(f'config.eval.extra_categories must name background categories, got '
                      f'{extra!r}: pass names, e.g. --config.eval.extra_categories=natural '
                      "or \"--config.eval.extra_categories=('natural', 'urban100')\".")
  tests = TestSpec(extra, config.eval.rain100l,
                   config.eval.rain100l_limit, config.eval.num_images, config.eval.image_size,
                   config.eval.seed)
  return Resolved(backgrounds, tests, architecture, loss, training_rain, shifted,
                  COMPUTE_DTYPES[config.compute_dtype], optimizer)
