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
  if not str(point['seed']).lstrip('-').isdigit():
    _fail(arg, f'seed must be an integer, got {point["seed"]!r}')
  point['seed'] = int(point['seed'])
  return point


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg is None:  # --config=configs/grid.py without a grid point
    _fail('configs/grid.py', 'no grid point: name one after a colon')
  point = parse(arg)
  scale = SCALES[point['scale']]
  config = ml_collections.ConfigDict()
  config.arch = point['arch']
  config.scale = point['scale']
  config.model = dict(MODELS[point['arch']][point['scale']])
  config.loss = ''  # '' = the architecture's own loss; see models.ARCHITECTURES
  config.seed = point['seed']

  # Data: an exact background set of N patches of P x P from the category's training
  # images. data_dir holds optional real sets (backgrounds/<category>/, rain100L/).
  config.category = point['category']
  config.data_dir = os.environ.get('JAXDERAIN_DATA_DIR', '')
  config.num_patches = point['num_patches']
  config.patch_size = scale['patch_size']
  config.test_fraction = 0.25  # share of a folder's images held out for testing
  # Images with a side shorter than patch_size are skipped; True upscales them instead
  # (bicubic, aspect kept, shorter side = patch_size), e.g. for 89x109 CelebA at P = 128.
  config.upscale_small_images = False
  config.strict_images = False  # True: a bad image file stops the run instead of a warning
  config.flips = True  # random horizontal and vertical flips of the background patches

  # Training rain: the named Table 1 range, every parameter spelled out so that any can
  # be overridden (e.g. --config.rain.angle="(-45, 45)"); see jaxderain/rain/streaks.py.
  config.rain_range = point['rain_range']
  config.rain = dataclasses.asdict(TRAINING_RANGES[point['rain_range']])

  # Optimisation: L1 loss; Adam; cosine annealing over all steps.
  config.batch_size = scale['batch_size']
  config.total_steps = scale['total_steps']
  config.learning_rate = scale['learning_rate']
  config.final_learning_rate = 0.0
  config.b1 = 0.9
  config.b2 = 0.99
  # float32, or bfloat16: forward and backward in bfloat16 with float32 master weights
  # (benchmarks/vs_torch.py measures what it gives on this machine).
  config.compute_dtype = 'float32'

  config.log_every = scale['log_every']
  config.checkpoint_every = scale['checkpoint_every']
  config.keep_checkpoints = 3

  config.eval = ml_collections.ConfigDict()
  # Rain mask M = R > t on [0, 1] rain layers (channel mean for RGB layers). With t = 0.05
  # (about 13 grey levels) M covers 13% of Rain100L's pixels and 97% of its rain energy
  # (sum R^2); the 21% of pixels with fainter rain count as background, adding at most 13
  # levels each to E_B, and do not dilute E_R.
  config.eval.rain_threshold = 0.05
  config.eval.num_images = scale['eval_images']
  config.eval.image_size = scale['eval_size']
  config.eval.seed = 2024  # fixed across grid points: every run sees the same test set
  # A paired folder (rainy/, clean/); default data_dir/rain100L. When present, eval adds
  # the plain paired test and its rain layers composited on the held-out backgrounds.
  config.eval.rain100l = ''
  config.eval.rain100l_limit = 100
  config.eval.strip_images = 4
  # Metrics are also averaged over the last few kept checkpoints ('recent' in the JSON);
  # they swing between checkpoints at small scales.
  config.eval.average_last = 1
  config.eval.extra_categories = ()  # also test on these categories' held-out sets
  # Test rains moved step by step away from the training rain along these axes
  # (angle, length, width; jaxderain/rain/shifts.py): how unseen must test rain be?
  config.eval.rain_shifts = () if point['scale'] == 'smoke' else shifts.AXES
  return config
