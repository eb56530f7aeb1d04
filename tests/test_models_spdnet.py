"""SPDNet: Haar transforms, shapes, parameter count, gradients, jit, losses and the
conversion of official state_dicts (checked against what PyTorch functional ops and
PyWavelets computed, stored in tests/data/references)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.interpreters import partial_eval as pe

from jaxderain.errors import CheckpointError
from jaxderain.models import spdnet, torch_layout
import make_references

SMOKE = dict(n_feats=4, n_resblocks=1)


def smoke_model(seed=0):
  return spdnet.SPDNet(**SMOKE, rngs=nnx.Rngs(params=seed))


@pytest.fixture(scope='module')
def model():
  """A smoke-sized model, shared: initialising compiles one sampler per shape (~10 s)."""
  return smoke_model()


def as_torch_state(model):
  """The model's parameters in the official state_dict layout (the inverse conversion)."""
  return {name: torch_layout.to_torch(np.asarray(param[...]), kind) for name, (param, kind)
          in torch_layout.params_by_torch_name(model, drop=('layers',)).items()}


def num_params(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def expected_params(c, n):
  """The parameters the official forward uses, counted from its layer list."""
  conv = lambda cin, cout: 9 * cin * cout + cout
  rb = 2 * conv(c, c) + 2 * c * c  # two convs, SE with two bias-free c x c linears
  rir = n * rb + conv(c, c)
  res_ch = conv(3, c // 2) + conv(c // 2, c) + rir
  prior = 2 * conv(c, c) + 2 * conv(2 * c, 2)
  fuse = conv(c, c) + rb  # transposed conv + RB
  subnet = 2 * conv(4 * c, c) + 2 * conv(c, 4 * c) + prior + conv(2 * c, c) + 9 * rir
  subnet += 2 * fuse
  return (conv(3, c // 2) + conv(c // 2, c) + 3 * (res_ch + subnet)
          + 2 * conv(2 * c, c) + 2 * conv(3 * c, c) + 3 * conv(c, 3))


def test_parameter_count_is_the_official_used_count(model):
  paper = nnx.eval_shape(lambda: spdnet.SPDNet(rngs=nnx.Rngs(0)))
  assert num_params(paper) == expected_params(32, 3) == 2_981_525
  assert num_params(model) == expected_params(SMOKE['n_feats'], SMOKE['n_resblocks'])


def test_haar_hand_computed_and_perfect_reconstruction():
  x = jnp.array([[1., 2.], [3., 4.]]).reshape(1, 2, 2, 1)
  bands = [float(b.squeeze()) for b in spdnet.haar_dwt(x)]
  assert bands == [5.0, -2.0, -1.0, 0.0]  # ll, lh, hl, hh
  x = jax.random.normal(jax.random.key(0), (2, 7, 10, 3))
  bands = spdnet.haar_dwt(x)
  assert all(b.shape == (2, 4, 5, 3) for b in bands)
  y = spdnet.haar_idwt(*bands)
  assert y.shape == (2, 8, 10, 3)
  np.testing.assert_allclose(y[:, :7], x, atol=1e-6)
  np.testing.assert_allclose(y[:, 7], 0, atol=1e-6)  # the zero row the DWT padded


def test_haar_matches_pywt():
  """Against pywt.dwt2 / idwt2 ('haar', mode 'zero') of a 7 x 10 array, as stored by
  tests/make_references.py: ll, lh, hl, hh are pywt's cA, cH, cV, cD."""
  reference = make_references.load('haar')
  x = reference['x'][None, :, :, None]
  ll, lh, hl, hh = (np.asarray(b)[0, :, :, 0] for b in spdnet.haar_dwt(jnp.asarray(x)))
  for ours, theirs in zip((ll, lh, hl, hh), ('c_a', 'c_h', 'c_v', 'c_d')):
    np.testing.assert_allclose(ours, reference[theirs], atol=1e-5, err_msg=theirs)
  np.testing.assert_allclose(
      spdnet.haar_idwt(*(b[None, :, :, None] for b in (ll, lh, hl, hh)))[0, :, :, 0],
      reference['idwt2'], atol=1e-5)


def test_nearest_indices_follow_pytorch():
  # F.interpolate(nearest) takes floor(i * n_in / n_out) with a float32 scale.
  np.testing.assert_array_equal(spdnet._nearest_indices(141, 67)[:5], [0, 2, 4, 6, 8])
  np.testing.assert_array_equal(spdnet._nearest_indices(73, 34)[-3:], [66, 68, 70])
  np.testing.assert_array_equal(spdnet._nearest_indices(5, 10), np.arange(10) // 2)


def test_outputs_on_odd_sizes_and_minimum_size(model):
  for shape in [(2, 67, 93, 3), (1, 5, 6, 3)]:
    outputs = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert [o.shape for o in outputs] == [shape] * 3
  with pytest.raises(ValueError, match='H, W >= 5'):
    model(jnp.zeros((1, 4, 8, 3)))


def test_every_parameter_reaches_the_loss_and_gradients_are_finite(model):
  rainy = jax.random.uniform(jax.random.key(2), (2, 19, 14, 3))
  clean = jax.random.uniform(jax.random.key(3), (2, 19, 14, 3))
  loss = lambda m: spdnet.published_loss(m(rainy), rainy, clean)
  graphdef, params = nnx.split(model)
  paths, leaves = zip(*nnx.to_flat_state(params))
  values = [leaf[...] for leaf in leaves]

  def loss_of(*values):
    state = nnx.from_flat_state(list(zip(paths, values)))
    return loss(nnx.merge(graphdef, state))

  # Structurally: the loss depends on every parameter (dead-code analysis of its jaxpr).
  _, used = pe.dce_jaxpr(jax.make_jaxpr(loss_of)(*values).jaxpr, [True])
  assert all(used), [p for p, u in zip(paths, used) if not u]
  # Numerically, at random init on 0-255 inputs some SE gates saturate and some narrow
  # ReLU layers are dead, so a few gradients are exactly zero; most are not.
  grads = [g[...] for _, g in nnx.to_flat_state(nnx.jit(nnx.grad(loss))(model))]
  assert len(grads) == len(paths)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
  assert sum(bool(jnp.any(g != 0)) for g in grads) >= 0.9 * len(grads)


def test_jit_matches_eager(model):
  # In float32 rounding is amplified from stage to stage at random init: out3 differs by
  # up to ~3e-4 of its range between the two (float64 agrees to ~1e-12, see the torch test).
  x = jax.random.uniform(jax.random.key(2), (2, 13, 18, 3))
  eager = model(x)
  jitted = nnx.jit(lambda m, x: m(x))(model, x)
  for e, j, tolerance in zip(eager, jitted, (2e-3, 1e-4, 1e-5)):
    np.testing.assert_allclose(j, e, rtol=0, atol=tolerance * float(jnp.ptp(e)))


def test_losses_and_image():
  clean = jnp.full((1, 5, 5, 3), 0.5)
  outputs = (clean + 0.1, clean - 0.2, clean)
  assert spdnet.image(outputs) is outputs[0]
  np.testing.assert_allclose(spdnet.published_loss(outputs, None, clean),
                             255**2 * (0.1**2 + 0.2**2), rtol=1e-5)
  np.testing.assert_allclose(spdnet.l1_loss(outputs, None, clean), 0.1, rtol=1e-5)


def test_convert_round_trip_ignores_unused_keys_and_names_errors(model):
  source, target = model, smoke_model(seed=2)
  state = as_torch_state(source)
  state['sub2.down3.conv.weight'] = np.zeros((4, 4, 3, 3))  # unused in the official forward
  state['conv_init1.ins.bias'] = np.zeros(2)
  state['sub1.DWT.h0_col'] = np.zeros((1, 1, 2, 1))
  x = jax.random.uniform(jax.random.key(4), (2, 13, 18, 3))
  before = target(x)[0]

  bad = dict(state, **{'sub1.extra.weight': np.zeros(3),
                       'output1.weight': np.zeros((3, 4, 1, 3))})
  del bad['sub3.fuse12.up.conv2d.bias']
  with pytest.raises(CheckpointError) as error:
    spdnet.convert_torch_state(bad, target)
  for part in ['keys missing: sub3.fuse12.up.conv2d.bias',
               'unexpected keys: sub1.extra.weight',
               'shape mismatches: output1.weight (3, 4, 1, 3) instead of (3, 4, 3, 3)']:
    assert part in str(error.value)
  np.testing.assert_array_equal(target(x)[0], before)  # unchanged after a failed load

  spdnet.convert_torch_state(state, target)
  for ours, theirs in zip(target(x), source(x)):
    np.testing.assert_array_equal(ours, theirs)


def test_converted_model_matches_torch_functional_reference():
  """The converted float64 model against the official forward run by torch functional ops
  in float64 (stored by tests/make_references.py: state_dict, images, out3, out2, out1)."""
  reference = make_references.load('spdnet')
  with jax.enable_x64(True):
    model = nnx.eval_shape(lambda: spdnet.SPDNet(**SMOKE, rngs=nnx.Rngs(0),
                                                 param_dtype=jnp.float64))
    spdnet.convert_torch_state(make_references.group(reference, 'state'), model)
    outputs = model(jnp.asarray(reference['images']))  # eager: XLA compiles it slowly
  for name, ours in zip(('out3', 'out2', 'out1'), outputs):
    expected = reference[name].transpose(0, 2, 3, 1) / 255
    assert ours.dtype == expected.dtype == np.float64
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0,
                               atol=1e-9 * np.ptp(expected), err_msg=name)
