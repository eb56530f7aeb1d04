"""benchmarks/torch_models.py: the PyTorch mirrors of the ResNet, UNet and SwinIR compute
what the JAX models compute (same parameters, outputs, L1 loss and one Adam step from the
same weights), in both memory formats, and conv_flops counts what torch's
FlopCounterMode counts.

The torch side is stored (tests/data/references/torch_mirrors.npz, written by
tests/make_references.py), so these tests need no torch; the few that run torch itself
skip without it (a benchmark-only dependency), among them the one checking that the
stored references are what torch and pywt compute now.
"""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from benchmarks import flops
from jaxderain.models import resnet, swinir, torch_layout, unet
import make_references

HAS_TORCH = importlib.util.find_spec('torch') is not None
HAS_PYWT = importlib.util.find_spec('pywt') is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason='needs torch (not a requirement)')

SMALL = {
    'resnet': (resnet.ResNet, dict(features=8, num_blocks=2)),
    'unet': (unet.UNet, dict(features=4)),
    'swinir': (swinir.SwinIR, dict(embed_dim=16, depths=(2,), num_heads=(2,),
                                   window_size=8, mlp_ratio=2.0)),
}
# Neither side is a multiple of the window (8) or of the UNet's total stride (8).
SHAPE = (2, 21, 29, 3)
LEARNING_RATE = 1e-3


@pytest.fixture(scope='module')
def reference():
  """The stored torch side: weights, inputs, outputs, Adam steps, FLOP counts."""
  return make_references.load('torch_mirrors')


def abstract_model(arch):
  module, options = SMALL[arch]
  return nnx.eval_shape(lambda: module(**options, rngs=nnx.Rngs(0)))


def in_torch_layout(jax_model):
  """The model's nnx.Params as numpy arrays named and laid out as the torch mirror's."""
  return {name: np.asarray(torch_layout.to_torch(np.asarray(variable[...]), kind))
          for name, (variable, kind) in torch_layout.params_by_torch_name(jax_model).items()}


class JaxRun:
  """One jitted step of one architecture from the stored weights: outputs on the stored
  images, the L1 loss against the stored targets, its gradients (torch layout) and the
  model after one Adam step (lr LEARNING_RATE)."""

  def __init__(self, arch, reference):
    self.model = abstract_model(arch)
    torch_layout.load_state_dict(make_references.group(reference, f'{arch}/weights'),
                                 torch_layout.layout_of(self.model), arch)
    graphdef, params, rest = nnx.split(self.model, nnx.Param, ...)
    tx = optax.adam(LEARNING_RATE)

    @jax.jit
    def step(params, x, target):
      def loss_fn(p):
        outputs = nnx.merge(graphdef, p, rest)(x)
        return jnp.mean(jnp.abs(outputs - target)), outputs

      (loss, outputs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, _ = tx.update(grads, tx.init(params), params)
      return outputs, loss, grads, optax.apply_updates(params, updates)

    self._step = step
    self._images, self._targets = reference['images'], reference['targets']
    outputs, loss, grads, new_params = step(params, self._images, self._targets)
    self.outputs, self.loss = np.asarray(outputs), float(loss)
    self.grads = in_torch_layout(nnx.merge(graphdef, grads, rest))
    self.updated = nnx.merge(graphdef, new_params, rest)

  def outputs_of(self, model):
    """The stored images' outputs from another model of this structure (no recompiling)."""
    return np.asarray(self._step(nnx.state(model, nnx.Param), self._images,
                                 self._targets)[0])


@pytest.fixture(scope='module')
def jax_runs(reference):
  """arch -> its JaxRun, computed on first use."""
  cache = {}

  def run(arch):
    if arch not in cache:
      cache[arch] = JaxRun(arch, reference)
    return cache[arch]

  return run


@pytest.mark.parametrize('arch', SMALL)
def test_parameter_counts_match(arch, reference):
  """The mirror's parameters (names, torch shapes) are the JAX model's, one for one."""
  mirror = make_references.group(reference, f'{arch}/weights')
  ours = {name: torch_layout.torch_shape(variable.shape, kind) for name, (variable, kind)
          in torch_layout.params_by_torch_name(abstract_model(arch)).items()}
  assert ours == {name: value.shape for name, value in mirror.items()}
  assert sum(np.prod(s) for s in ours.values()) == sum(v.size for v in mirror.values())


@pytest.mark.parametrize('arch', SMALL)
def test_outputs_match_in_both_memory_formats(arch, reference, jax_runs):
  run = jax_runs(arch)
  stored = make_references.group(reference, f'{arch}/outputs')
  variants = ['default'] + (['fused_attention'] if arch == 'swinir' else [])
  assert sorted(stored) == sorted(f'{v}/{memory_format}' for v in variants
                                  for memory_format in ('contiguous', 'channels_last'))
  for name, outputs in stored.items():
    assert outputs.shape == SHAPE, name
    np.testing.assert_allclose(outputs, run.outputs, rtol=0, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('arch', SMALL)
def test_one_adam_step_matches(arch, reference, jax_runs):
  """Same weights, batch and target: the same L1 loss and, after one Adam step (lr 1e-3,
  both frameworks' defaults otherwise: betas 0.9 / 0.999, eps 1e-8), the same parameters.

  Adam's first step is lr * g / (|g| + eps): entries with 0 < |g| <= 10 eps (JAX's g) are
  decided by rounding noise (the key third of qkv.bias has no gradient at all, as softmax
  ignores a shift shared by all keys, so it gets ~1e-10 of noise); they must be few and
  are only held to |difference| <= lr. All others must agree to 1e-3 lr.
  """
  run = jax_runs(arch)
  before = in_torch_layout(run.model)
  after = in_torch_layout(run.updated)
  variants = ['default'] + (['fused_attention'] if arch == 'swinir' else [])
  noise = {name: (g != 0) & (np.abs(g) <= 10 * 1e-8) for name, g in run.grads.items()}
  assert sum(n.sum() for n in noise.values()) <= 0.01 * sum(g.size for g in run.grads.values())
  for variant in variants:
    assert abs(reference[f'{arch}/adam/{variant}/loss'] - run.loss) < 1e-5
    torch_after = make_references.group(reference, f'{arch}/adam/{variant}/after')
    assert torch_after.keys() == after.keys()
    for name, param in torch_after.items():
      moved = np.abs(after[name] - before[name]).max()
      assert 0.5 * LEARNING_RATE < moved < 1.5 * LEARNING_RATE, name  # a real step
      difference = np.abs(param - after[name])
      assert difference[~noise[name]].max(initial=0) < 1e-3 * LEARNING_RATE, (variant, name)
      assert difference[noise[name]].max(initial=0) <= LEARNING_RATE, (variant, name)


def test_swinir_state_dict_loads_into_jax_with_convert_torch_state(reference, jax_runs):
  """The mirror's state_dict (torch's own init, perturbed; buffers included) has the
  official keys and shapes: torch -> JAX works too."""
  run = jax_runs('swinir')
  state = make_references.group(reference, 'swinir_torch_init/state')
  assert any(key.endswith('relative_position_index') for key in state)
  jax_model = nnx.clone(run.model)
  swinir.convert_torch_state(state, jax_model)
  expected = reference['swinir_torch_init/outputs']
  assert np.abs(expected - run.outputs).max() > 0.01  # other weights than the run's
  np.testing.assert_allclose(run.outputs_of(jax_model), expected, rtol=0, atol=1e-4)


@needs_torch
def test_from_jax_rejects_another_architecture_size(jax_runs):
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  jax_model = jax_runs('resnet').model  # ResNet(8, 2)
  with pytest.raises(ValueError, match=r'missing \[.blocks\.2\.conv1\.bias'):
    torch_models.from_jax(torch_models.ResNet(8, 3), jax_model)
  with pytest.raises(ValueError, match='head.weight: JAX gives'):
    torch_models.from_jax(torch_models.ResNet(4, 2), jax_model)


def test_conv_flops_of_the_paper_resnet_by_hand():
  # head, 16 blocks of two 64 -> 64 convs, tail; per pixel, times 8 x 64 x 64 pixels.
  per_pixel = 2 * 9 * 3 * 64 + 32 * 2 * 9 * 64 * 64 + 2 * 9 * 64 * 3
  total = flops.conv_flops('resnet', dict(features=64, num_blocks=16), 8, 64, 64)
  assert total == per_pixel * 8 * 64 * 64 == 77_535_903_744  # x 3 = 232.6 GFLOP a step


@pytest.mark.parametrize('arch', SMALL)
def test_conv_flops_match_torch_flop_counter(arch, reference):
  """FlopCounterMode counts convs (transposed ones on the input grid), Linear layers
  and matmuls as 2 x multiply-adds, which is the documented conv_flops convention."""
  assert flops.conv_flops(arch, SMALL[arch][1], *SHAPE[:3]) == reference[f'{arch}/flops']


@pytest.mark.skipif(not (HAS_TORCH and HAS_PYWT),
                    reason='needs torch and PyWavelets (not requirements)')
def test_stored_references_are_what_torch_and_pywt_compute_now():
  """Every file of tests/data/references, computed again: the same entries, dtypes and
  shapes, and the same values up to float rounding (another CPU may round otherwise;
  Adam moves rounding-noise gradients by up to lr either way)."""
  for name in make_references.NAMES:
    stored = make_references.load(name)
    fresh = {key: np.asarray(value) for key, value in make_references.BUILDERS[name]().items()}
    assert fresh.keys() == stored.keys() - {'versions'}, name
    for key, value in fresh.items():
      assert value.dtype == stored[key].dtype and value.shape == stored[key].shape, key
      if np.issubdtype(value.dtype, np.floating):
        atol = 2 * LEARNING_RATE if '/adam/' in key else 1e-5 * max(
            1, np.abs(stored[key]).max())
        np.testing.assert_allclose(value, stored[key], rtol=1e-5, atol=atol, err_msg=key)
      else:
        np.testing.assert_array_equal(value, stored[key], err_msg=key)
