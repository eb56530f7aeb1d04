"""configs/grid.py: the grid-point argument, scales, the field schema, and errors before
any work."""

import json

import pytest

from jaxderain.configs import grid, schema
from jaxderain.errors import ConfigError


def test_paper_defaults_from_the_exact_argument():
  config = grid.get_config('resnet,medium,64')
  assert (config.arch, config.rain_range, config.num_patches) == ('resnet', 'medium', 64)
  assert config.scale == 'paper' and config.category == 'natural' and config.seed == 0
  assert config.learning_rate == 2e-4 and (config.b1, config.b2) == (0.9, 0.99)
  assert config.total_steps == 250_000 and config.batch_size == 16
  assert config.patch_size == 128
  assert dict(config.model) == {'features': 64, 'num_blocks': 16}


def test_options_and_scales():
  config = grid.get_config('resnet,large,8, category=/tmp/imgs ,scale=cpu,seed=3')
  assert config.rain_range == 'large' and config.num_patches == 8
  assert config.category == '/tmp/imgs' and config.seed == 3 and config.scale == 'cpu'
  assert config.total_steps < grid.SCALES['paper']['total_steps']
  smoke = grid.get_config('resnet,small,30000,scale=smoke')
  assert smoke.num_patches == 30000 and smoke.patch_size < config.patch_size


def test_cpu_long_trains_the_cpu_models_for_longer():
  for arch in grid.ARCHS:
    cpu = grid.get_config(f'{arch},medium,64,scale=cpu')
    long = grid.get_config(f'{arch},medium,64,scale=cpu-long')
    assert dict(long.model) == dict(cpu.model) and long.scale == 'cpu-long'
    assert long.total_steps > cpu.total_steps
    assert (long.patch_size, long.batch_size) == (cpu.patch_size, cpu.batch_size)


@pytest.mark.parametrize('arg, problem', [
    ('vgg,medium,64', "unknown arch 'vgg'"),
    ('resnet,heavy,64', "unknown rain range 'heavy'"),
    ('resnet,medium,0', 'N must be a positive integer'),
    ('resnet,medium,-5', 'N must be a positive integer'),
    ('resnet,medium,sixty', 'N must be a positive integer'),
    ('resnet,medium', 'it needs ARCH,RAIN_RANGE,N first'),
    ('resnet,medium,64,scale', "'scale' is not a key=value pair"),
    ('resnet,medium,64,colour=red', "unknown key 'colour'"),
    ('resnet,medium,64,scale=tpu', "unknown scale 'tpu'"),
    ('resnet,medium,64,seed=x', 'seed must be an integer'),
])
def test_bad_arguments_name_the_problem_and_the_choices(arg, problem):
  with pytest.raises(ValueError) as error:
    grid.get_config(arg)
  message = str(error.value)
  assert problem in message
  for choice in (*grid.ARCHS, 'small, medium, large', 'paper, cpu-long, cpu, smoke'):
    assert choice in message


def test_a_field_declared_once_is_validated_grouped_and_resume_checked():
  dropout = schema.Field('dropout', float, 0.1, low=0.0, high=1.0, exclusive='high',
                         shared=True)
  cadence = schema.Field('eval.every', int, 3, low=1, trains=False, added=3)
  fields = schema.Schema(grid.FIELDS + (dropout, cadence))
  point, scale = grid.parse('resnet,medium,8,scale=smoke'), grid.SCALES['smoke']
  first, second = fields.build(point, scale), fields.build(point, scale)
  assert first.dropout == 0.1 and first.eval.every == 3
  fields.check(first)  # validated
  second.dropout = 1.5
  with pytest.raises(ConfigError, match=r'config.dropout must be in \[0.0, 1.0\), got 1.5: '
                                        r'set --config.dropout.'):
    fields.check(second)
  second.dropout = 0.2  # grouped: points with another dropout do not train together
  assert fields.together_key(first) != fields.together_key(second)
  assert fields.first_unshared(first, second) == ('dropout', 0.1, 0.2)
  recorded = json.loads(first.to_json())  # resume-checked: it changes what trains
  assert fields.training_changes(recorded, second) == ['dropout: 0.1 -> 0.2']
  second.dropout, second.eval.every = 0.1, 9  # a field that leaves training alone
  assert fields.training_changes(recorded, second) == []
  assert fields.together_key(first) == fields.together_key(second)
  del recorded['dropout']  # a run recorded before the field: no value to compare
  assert fields.training_changes(recorded, first) == ['dropout: (absent) -> 0.1']
  old_run = json.loads(grid.get_config('resnet,medium,8,scale=smoke').to_json())
  del old_run['compute_dtype']  # recorded before the field existed: it used float32
  assert grid.SCHEMA.training_changes(old_run, grid.get_config(
      'resnet,medium,8,scale=smoke')) == []
