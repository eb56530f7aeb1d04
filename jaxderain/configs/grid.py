"""One grid point of the study: `configs/grid.py:ARCH,RAIN_RANGE,N[,key=value...]`.

  python launch.py --config=configs/grid.py:resnet,medium,64 --workdir=runs/x
  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu,category=/imgs,seed=1

ARCH: a registered architecture; RAIN_RANGE: small | medium | large (Table 1); N: the
number of background patches. Keys: category (natural, a folder of images, or a name
under data_dir/backgrounds/), scale (paper | cpu-long | cpu | smoke), seed.
Every field can then be overridden with --config.FIELD=value. Defaults are the paper's
training recipe; `scale` shrinks steps, patches, width and batch for small machines.
"""

import dataclasses
import os

import ml_collections

from jaxderain.configs import schema
from jaxderain.errors import ConfigError
from jaxderain.rain import RAIN_RANGES, TRAINING_RANGES, shifts

# Per architecture and scale: the model's keyword options (models/<arch>.py).
MODELS = {
    'resnet': {'paper': dict(features=64, num_blocks=16),
               'cpu': dict(features=16, num_blocks=4),
               'smoke': dict(features=8, num_blocks=2)},
    'unet': {'paper': dict(features=64),
             'cpu': dict(features=8),
             'smoke': dict(features=4)},
    'swinir': {'paper': dict(embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6,
                             window_size=8, mlp_ratio=2.0),
               'cpu': dict(embed_dim=16, depths=(2,), num_heads=(2,), window_size=8,
                           mlp_ratio=2.0),
               'smoke': dict(embed_dim=8, depths=(2,), num_heads=(2,), window_size=8,
                             mlp_ratio=2.0)},
    'rcdnet': {'paper': dict(num_stages=17, num_kernels=32, num_z=32, num_blocks=4),
               'cpu': dict(num_stages=3, num_kernels=8, num_z=8, num_blocks=1),
               'smoke': dict(num_stages=3, num_kernels=4, num_z=4, num_blocks=1,
                             kernel_size=5)},
    'spdnet': {'paper': dict(n_feats=32, n_resblocks=3),
               'cpu': dict(n_feats=8, n_resblocks=1),
               'smoke': dict(n_feats=4, n_resblocks=1)},
}
for _sizes in MODELS.values():
  _sizes['cpu-long'] = _sizes['cpu']  # cpu-long trains the cpu models for longer
ARCHS = tuple(MODELS)
KEYS = ('category', 'scale', 'seed')
MAX_SEED = 2**32 - 1  # seeds key jax.random and numpy's generators: 0 ... 2^32 - 1

# Per scale: patch size, batch, steps, learning rate, logging/checkpoint cadence and the
# held-out test set's size. `paper` is the paper's recipe. The small rungs were fixed
# before any verdict was computed: `cpu` fits the claims grid (30 points) in 2 hours on a
# 2-core CPU (4,000 steps of 0.047 s plus about 10 s of start-up and evaluation a point),
# `cpu-long` in about 3 hours. Their learning rate is the best final training loss of
# {2e-4, 1e-3, 2e-3} on resnet,medium,4096,scale=cpu at 4,000 steps (0.031, 0.020, 0.018).
SCALES = {
    'paper': dict(patch_size=128, batch_size=16, total_steps=250_000, learning_rate=2e-4,
                  log_every=100, checkpoint_every=5_000, eval_images=100, eval_size=128),
    'cpu-long': dict(patch_size=64, batch_size=8, total_steps=7_000, learning_rate=2e-3,
                     log_every=250, checkpoint_every=1_000, eval_images=32, eval_size=128),
    # The main job on a 2-core CPU: about 4 minutes for training and evaluation.
    'cpu': dict(patch_size=64, batch_size=8, total_steps=4_000, learning_rate=2e-3,
                log_every=250, checkpoint_every=1_000, eval_images=32, eval_size=128),
    # Pipeline checks in tests: about a minute at most.
    'smoke': dict(patch_size=32, batch_size=8, total_steps=40, learning_rate=2e-4,
                  log_every=10, checkpoint_every=10, eval_images=4, eval_size=64),
}


def _fail(arg, problem):
  raise ConfigError(
      f'Bad grid point {arg!r}: {problem}. Expected ARCH,RAIN_RANGE,N[,key=value...] with '
      f'ARCH in {{{", ".join(ARCHS)}}}, RAIN_RANGE in {{{", ".join(RAIN_RANGES)}}}, N a '
      f'positive integer, keys in {{{", ".join(KEYS)}}} and scale in '
      f'{{{", ".join(SCALES)}}}; e.g. configs/grid.py:resnet,medium,64,scale=cpu.')


def parse(arg: str) -> dict:
  """'resnet,medium,64,scale=cpu' -> {'arch': 'resnet', 'rain_range': 'medium', ...}."""
  parts = [p.strip() for p in arg.split(',')]
  if len(parts) < 3 or any('=' in p for p in parts[:3]):
    _fail(arg, 'it needs ARCH,RAIN_RANGE,N first')
  arch, rain_range, num_patches = parts[:3]
  if arch not in ARCHS:
    _fail(arg, f'unknown arch {arch!r}')
  if rain_range not in RAIN_RANGES:
    _fail(arg, f'unknown rain range {rain_range!r}')
  if not num_patches.isdigit() or int(num_patches) < 1:
    _fail(arg, f'N must be a positive integer, got {num_patches!r}')
  point = dict(arch=arch, rain_range=rain_range, num_patches=int(num_patches),
               category='natural', scale='paper', seed=0)
  for pair in parts[3:]:
    key, sep, value = pair.partition('=')
    if not sep or not key or not value:
      _fail(arg, f'{pair!r} is not a key=value pair')
    if key not in KEYS:
      _fail(arg, f'unknown key {key!r}')
    point[key] = value
  if point['scale'] not in SCALES:
    _fail(arg, f'unknown scale {point["scale"]!r}')
  if not str(point['seed']).isdigit() or int(point['seed']) > MAX_SEED:
    _fail(arg, f'seed must be an integer from 0 to {MAX_SEED}, got {point["seed"]!r}')
  point['seed'] = int(point['seed'])
  return point


# Every field of a grid point, declared once: type, default (a value, or a function of
# the grid point and its scale), range and role (schema.py: `trains` False = a resumed
# run may change it; `shared` = points trained in one program agree on it).
_point = lambda key: lambda point, scale: point[key]
_scale = lambda key: lambda point, scale: scale[key]
FIELDS = (
    schema.Field('arch', str, _point('arch'), shared=True),
    schema.Field('scale', str, _point('scale')),
    schema.Field('model', dict,
                 lambda point, scale: dict(MODELS[point['arch']][point['scale']]),
                 shared=True),
    # '' = the architecture's own loss; see models.ARCHITECTURES.
    schema.Field('loss', str, '', shared=True),
    schema.Field('seed', int, _point('seed'), low=0, high=MAX_SEED),
    # Data: an exact background set of N patches of P x P from the category's training
    # images. data_dir holds optional real sets (backgrounds/<category>/, rain100L/); a
    # run may resume with another (the same data mounted elsewhere, e.g. on another host).
    schema.Field('category', str, _point('category')),
    schema.Field('data_dir', str, lambda point, scale: os.environ.get('JAXDERAIN_DATA_DIR',
                                                                       ''), trains=False),
    schema.Field('num_patches', int, _point('num_patches'), low=1),
    schema.Field('patch_size', int, _scale('patch_size'), low=1, shared=True),
    # Share of a folder's images held out for testing.
    schema.Field('test_fraction', float, 0.25, low=0.0, high=1.0, exclusive='both'),
    # Images with a side shorter than patch_size are skipped; True upscales them instead
    # (bicubic, aspect kept, shorter side = patch_size), e.g. for 89x109 CelebA at P = 128.
    schema.Field('upscale_small_images', bool, False),
    # True: a bad image file stops the run instead of a warning.
    schema.Field('strict_images', bool, False),
    # Random horizontal and vertical flips of the background patches.
    schema.Field('flips', bool, True, shared=True),
    # Training rain: the named Table 1 range, every parameter spelled out so that any can
    # be overridden (e.g. --config.rain.angle="(-45, 45)"); see jaxderain/rain/streaks.py.
    schema.Field('rain_range', str, _point('rain_range')),
    schema.Field('rain', dict, lambda point, scale: dataclasses.asdict(
        TRAINING_RANGES[point['rain_range']]), shared=True),
    # Optimisation: L1 loss; Adam; cosine annealing over all steps.
    schema.Field('batch_size', int, _scale('batch_size'), low=1, shared=True),
    schema.Field('total_steps', int, _scale('total_steps'), low=1, shared=True),
    schema.Field('learning_rate', float, _scale('learning_rate'), low=0.0, exclusive='low',
                 shared=True),
    schema.Field('final_learning_rate', float, 0.0, low=0.0, shared=True),
    schema.Field('b1', float, 0.9, low=0.0, high=1.0, exclusive='high', shared=True),
    schema.Field('b2', float, 0.99, low=0.0, high=1.0, exclusive='high', shared=True),
    # float32, or bfloat16: forward and backward in bfloat16 with float32 master weights
    # (benchmarks/vs_torch.py measures what it gives on this machine).
    schema.Field('compute_dtype', str, 'float32', shared=True, added='float32'),
    schema.Field('log_every', int, _scale('log_every'), low=1, trains=False, shared=True),
    schema.Field('checkpoint_every', int, _scale('checkpoint_every'), low=1, trains=False,
                 shared=True),
    schema.Field('keep_checkpoints', int, 3, low=1, trains=False, shared=True),
    # Rain mask M = R > t on [0, 1] rain layers (channel mean for RGB layers). With t = 0.05
    # (about 13 grey levels) M covers 13% of Rain100L's pixels and 97% of its rain energy
    # (sum R^2); the 21% of pixels with fainter rain count as background, adding at most 13
    # levels each to E_B, and do not dilute E_R.
    schema.Field('eval.rain_threshold', float, 0.05, low=0.0, high=1.0, exclusive='high',
                 trains=False),
    schema.Field('eval.num_images', int, _scale('eval_images'), low=1, trains=False),
    # At least SSIM's window (eval/metrics.py SSIM_WINDOW; tests/test_metrics.py ties them).
    schema.Field('eval.image_size', int, _scale('eval_size'), low=11, trains=False),
    # Fixed across grid points: every run sees the same test set.
    schema.Field('eval.seed', int, 2024, low=0, high=MAX_SEED, trains=False),
    # A paired folder (rainy/, clean/); default data_dir/rain100L. When present, eval adds
    # the plain paired test and its rain layers composited on the held-out backgrounds.
    schema.Field('eval.rain100l', str, '', trains=False),
    schema.Field('eval.rain100l_limit', int, 100, low=1, trains=False),
    schema.Field('eval.strip_images', int, 4, low=0, trains=False),
    # Metrics are also averaged over the last few kept checkpoints ('recent' in the JSON);
    # they swing between checkpoints at small scales.
    schema.Field('eval.average_last', int, 1, low=1, trains=False),
    # Also test on these categories' held-out sets.
    schema.Field('eval.extra_categories', tuple, (), trains=False),
    # Test rains moved step by step away from the training rain along these axes
    # (angle, length, width; jaxderain/rain/shifts.py): how unseen must test rain be?
    schema.Field('eval.rain_shifts', tuple,
                 lambda point, scale: () if point['scale'] == 'smoke' else shifts.AXES,
                 trains=False),
)
SCHEMA = schema.Schema(FIELDS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The ConfigDict of grid point `arg` (see the module docstring): every field of FIELDS
  at its default."""
  if arg is None:  # --config=configs/grid.py without a grid point
    _fail('configs/grid.py', 'no grid point: name one after a colon')
  point = parse(arg)
  return SCHEMA.build(point, SCALES[point['scale']])
