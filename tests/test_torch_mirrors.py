"""benchmarks/torch_models.py: the PyTorch mirrors of the ResNet, UNet and SwinIR compute
what the JAX models compute (same parameter count, outputs, L1 loss and one Adam step
from the same weights), in both memory formats, and conv_flops counts what torch's
FlopCounterMode counts. Skipped without torch (a benchmark-only dependency)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

torch = pytest.importorskip('torch')

from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
from jaxderain.models import resnet, swinir, unet  # pylint: disable=g-import-not-at-top

SMALL = {
    'resnet': (resnet.ResNet, dict(features=8, num_blocks=2)),
    'unet': (unet.UNet, dict(features=4)),
    'swinir': (swinir.SwinIR, dict(embed_dim=16, depths=(2,), num_heads=(2,),
                                   window_size=8, mlp_ratio=2.0)),
}
# Neither side is a multiple of the window (8) or of the UNet's total stride (8).
SHAPE = (2, 37, 53, 3)
LEARNING_RATE = 1e-3


def random_jax_model(arch, seed=0):
  """The small JAX model with random weights of about the trained scale, biases and
  LayerNorm offsets included, filled from numpy (an abstract model: no PRNG kernels to
  compile, which made eager init most of this file's time)."""
  module, options = SMALL[arch]
  model = nnx.eval_shape(lambda: module(**options, rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(seed)
  for path, variable in nnx.iter_graph(model):
    if isinstance(variable, nnx.Param):
      noise = rng.standard_normal(variable.shape, np.float32)
      if path[-1] == 'kernel':  # He scale; conv HWIO or linear (in, out) fan_in
        noise *= np.sqrt(2 / np.prod(variable.shape[:-1]))
      elif path[-1] == 'scale':
        noise = 1 + 0.1 * noise
      else:  # biases and the relative position bias table
        noise *= 0.05
      variable.set_value(jnp.asarray(noise))
  return model


def images(seed):
  return np.random.default_rng(seed).random(SHAPE, np.float32)


def to_torch(x, channels_last=True):
  t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
  return t.to(memory_format=torch.channels_last) if channels_last else t.contiguous()


def to_numpy(t):
  return t.detach().numpy().transpose(0, 2, 3, 1)


class JaxRun:
  """One jitted step of one architecture from random weights: outputs on images(1), the
  L1 loss against images(2) and the model after one Adam step (lr LEARNING_RATE)."""

  def __init__(self, arch):
    self.model = random_jax_model(arch)
    graphdef, params, rest = nnx.split(self.model, nnx.Param, ...)
    tx = optax.adam(LEARNING_RATE)

    @jax.jit
    def step(params, x, target):
      def loss_fn(p):
        outputs = nnx.merge(graphdef, p, rest)(x)
        return jnp.mean(jnp.abs(outputs - target)), outputs

      (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, _ = tx.update(grads, tx.init(params), params)
      return outputs, loss, optax.apply_updates(params, updates)

    self._step = step
    outputs, loss, new_params = step(params, images(1), images(2))
    self.outputs, self.loss = np.asarray(outputs), float(loss)
    self.updated = nnx.merge(graphdef, new_params, rest)

  def outputs_of(self, model):
    """images(1)'s outputs from another model of this structure (no recompilation)."""
    return np.asarray(self._step(nnx.state(model, nnx.Param), images(1), images(2))[0])


@pytest.fixture(scope='module')
def jax_runs():
  """arch -> its JaxRun, computed on first use."""
  cache = {}

  def run(arch):
    if arch not in cache:
      cache[arch] = JaxRun(arch)
    return cache[arch]

  return run


def torch_mirror(arch, jax_model, **options):
  torch.manual_seed(0)
  return torch_models.from_jax(torch_models.build(arch, **SMALL[arch][1], **options),
                               jax_model)


def num_params(jax_model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(jax_model, nnx.Param)))


@pytest.mark.parametrize('arch', SMALL)
def test_parameter_counts_match(arch):
  module, options = SMALL[arch]
  jax_model = nnx.eval_shape(lambda: module(**options, rngs=nnx.Rngs(0)))
  mirror = torch_models.build(arch, **options)
  assert sum(p.numel() for p in mirror.parameters()) == num_params(jax_model)


@pytest.mark.parametrize('arch', SMALL)
def test_outputs_match_in_both_memory_formats(arch, jax_runs):
  run = jax_runs(arch)
  variants = [{}] + ([{'fused_attention': True}] if arch == 'swinir' else [])
  for options in variants:
    mirror = torch_mirror(arch, run.model, **options)
    with torch.no_grad():
      plain = mirror(to_torch(images(1), channels_last=False))
      mirror = mirror.to(memory_format=torch.channels_last)
      last = mirror(to_torch(images(1)))
    assert plain.shape == last.shape == (2, 3) + SHAPE[1:3]
    assert last.stride(1) == 1  # channels_last (a crop of it for the padded models)
    np.testing.assert_allclose(to_numpy(plain), run.outputs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(to_numpy(last), run.outputs, rtol=0, atol=1e-4)


@pytest.mark.parametrize('arch', SMALL)
def test_one_adam_step_matches(arch, jax_runs):
  """Same weights, batch and target: the same L1 loss and, after one Adam step (lr 1e-3,
  both frameworks' defaults otherwise: betas 0.9 / 0.999, eps 1e-8), the same parameters.

  Adam's first step is lr * g / (|g| + eps): entries with 0 < |g| <= 10 eps are decided
  by rounding noise (the key third of qkv.bias has no gradient at all, as softmax
  ignores a shift shared by all keys, so it gets ~1e-10 of noise); they must be few and
  are only held to |difference| <= lr. All others must agree to 1e-3 lr.
  """
  run = jax_runs(arch)
  before = torch_models.jax_params_in_torch_layout(run.model)
  after = torch_models.jax_params_in_torch_layout(run.updated)
  variants = [{}] + ([{'fused_attention': True}] if arch == 'swinir' else [])
  for options in variants:
    mirror = torch_mirror(arch, run.model, **options).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(mirror.parameters(), lr=LEARNING_RATE)
    loss = (mirror(to_torch(images(1))) - to_torch(images(2))).abs().mean()
    optimizer.zero_grad()
    loss.backward()
    grads = {name: param.grad.numpy().copy() for name, param in mirror.named_parameters()}
    optimizer.step()
    assert abs(loss.item() - run.loss) < 1e-5
    undecided = 0
    for name, param in mirror.named_parameters():
      moved = np.abs(after[name] - before[name]).max()
      assert 0.5 * LEARNING_RATE < moved < 1.5 * LEARNING_RATE, name  # a real step
      noisy = (grads[name] != 0) & (np.abs(grads[name]) <= 10 * 1e-8)
      undecided += noisy.sum()
      difference = np.abs(param.detach().numpy() - after[name])
      assert difference[~noisy].max(initial=0) < 1e-3 * LEARNING_RATE, name
      assert difference[noisy].max(initial=0) <= LEARNING_RATE, name
    assert undecided <= 0.01 * sum(g.size for g in grads.values())


def test_swinir_state_dict_loads_into_jax_with_convert_torch_state(jax_runs):
  """The mirror's state_dict has the official keys and shapes: torch -> JAX works too."""
  run = jax_runs('swinir')
  torch.manual_seed(1)
  mirror = torch_models.build('swinir', **SMALL['swinir'][1])
  with torch.no_grad():
    for param in mirror.parameters():
      param.add_(0.05 * torch.randn_like(param))
    expected = to_numpy(mirror(to_torch(images(1))))
  jax_model = nnx.clone(run.model)
  swinir.convert_torch_state({k: v.numpy() for k, v in mirror.state_dict().items()},
                             jax_model)
  np.testing.assert_allclose(run.outputs_of(jax_model), expected, rtol=0, atol=1e-4)


def test_from_jax_rejects_another_architecture_size(jax_runs):
  jax_model = jax_runs('resnet').model  # ResNet(8, 2)
  with pytest.raises(ValueError, match=r'missing \[.blocks\.2\.conv1\.bias'):
    torch_models.from_jax(torch_models.ResNet(8, 3), jax_model)
  with pytest.raises(ValueError, match='head.weight: JAX gives'):
    torch_models.from_jax(torch_models.ResNet(4, 2), jax_model)


def test_conv_flops_of_the_paper_resnet_by_hand():
  # head, 16 blocks of two 64 -> 64 convs, tail; per pixel, times 8 x 64 x 64 pixels.
  per_pixel = 2 * 9 * 3 * 64 + 32 * 2 * 9 * 64 * 64 + 2 * 9 * 64 * 3
  flops = torch_models.conv_flops('resnet', dict(features=64, num_blocks=16), 8, 64, 64)
  assert flops == per_pixel * 8 * 64 * 64 == 77_535_903_744  # x 3 = 232.6 GFLOP a step


@pytest.mark.parametrize('arch', SMALL)
def test_conv_flops_match_torch_flop_counter(arch):
  """FlopCounterMode counts convs (transposed ones on the input grid), Linear layers
  and matmuls as 2 x multiply-adds, which is the documented conv_flops convention."""
  from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=g-import-not-at-top
  mirror = torch_models.build(arch, **SMALL[arch][1])
  with torch.no_grad(), FlopCounterMode(display=False) as counter:
    mirror(to_torch(images(1)))
  assert torch_models.conv_flops(arch, SMALL[arch][1], *SHAPE[:3]) == (
      counter.get_total_flops())
