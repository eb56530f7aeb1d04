"""Property-based fuzzing (hypothesis) of what users hand the commands: every config field
set to random values of random types (huge, negative, NaN, empty, text), random JSON in a
study's records, and random files with image suffixes to derain. The only outcomes allowed
are success, or one line `error: ...` with a non-zero exit, and no input file changed.

Example counts (sized for the 2-core development machine): 400 config checks in process
and 80 command lines through launch.py; 300 damaged study folders; 40 files to derain.
Commands run many cases in one child process (tests/cli_cases.py), so hypothesis draws the
cases and the child runs them; a failure names its case. Marker: reliability."""

import hashlib
import io
import json
import math
import pathlib

import hypothesis
import ml_collections
import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from conftest import SMOKE_POINT, run_commands
from jaxderain.configs import checks, grid
from jaxderain.data.images import IMAGE_SUFFIXES
from jaxderain.errors import UserError
from jaxderain.study import results, status
from jaxderain.study.folders import DoneRecord, StudyFolder

pytestmark = pytest.mark.reliability

# Text a user can type on a command line (no control characters, no lone surrogates).
TYPED = st.text(st.characters(blacklist_categories=('Cs', 'Cc')), max_size=12)
NUMBERS = st.one_of(
    st.integers(-10**30, 10**30), st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2))
ANY_VALUE = st.one_of(NUMBERS, TYPED, st.booleans(), st.none(),
                      st.lists(st.one_of(NUMBERS, TYPED), max_size=3).map(tuple))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TYPED),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(TYPED, inner, max_size=3)),
    max_leaves=8)
SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck))


def one_error_line(result) -> bool:
  lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  return result.returncode == 1 and len(lines) == 1 and 'Traceback' not in result.stderr


# Config fields --------------------------------------------------------------------------

FIELD_NAMES = [f.name for f in grid.FIELDS if f.kind is not dict] + [
    f'rain.{name}' for name in grid.get_config(SMOKE_POINT.split(':')[1]).rain]


def set_field(config: ml_collections.ConfigDict, name: str, value) -> bool:
  """Set config.NAME to `value` as a --config.NAME flag would; False when the config's
  types refuse it (the flag parser then refuses the command line as one line)."""
  try:
    grid.SCHEMA.field(name).write(config, value)
  except (TypeError, ValueError, KeyError):
    return False
  return True


@hypothesis.settings(max_examples=400, **SETTINGS)
@hypothesis.given(changes=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), ANY_VALUE),
                                   min_size=1, max_size=3))
def test_any_config_values_are_accepted_or_one_config_error(changes):
  config = grid.get_config(SMOKE_POINT.split(':')[1])
  if not all(set_field(config, name, value) for name, value in changes):
    return
  try:
    checks.resolve(config)
  except UserError as error:
    assert '\n' not in str(error) and str(error)


def flag_value(value) -> str:
  """How a user would type `value` after --config.FIELD=."""
  if isinstance(value, tuple):
    return '(' + ', '.join(map(str, value)) + ')'
  return str(value)


def test_any_config_flags_are_one_line_and_touch_nothing(tmp_path):
  cases = []

  @hypothesis.settings(max_examples=80, **SETTINGS)
  @hypothesis.given(changes=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), ANY_VALUE),
                                     min_size=1, max_size=2))
  def collect(changes):
    cases.append([f'--config.{name}={flag_value(value)}' for name, value in changes])

  collect()
  workdir = tmp_path / 'never'
  runs = run_commands('launch', *[[f'--config={SMOKE_POINT}', f'--workdir={workdir}',
                                   '--mode=eval', *flags] for flags in cases])
  for flags, result in zip(cases, runs):
    assert one_error_line(result), (flags, result.stderr[-2000:])
  assert not workdir.exists()


# Study records --------------------------------------------------------------------------

def valid_eval_record() -> dict:
  metrics = {'E_R': 10.0, 'E_B': 5.0, 'psnr': 30.0, 'ssim': 0.9, 'removal_share': 0.5,
             'net_removal': 0.4, 'over_subtraction': 0.1}
  row = {**metrics, 'identity_psnr': 25.0, 'identity_E_B': 1.0}
  return {'testset': 'natural_unseen', 'step': 40, **metrics,
          'reference': {'identity': {'E_R': 0.0, 'E_B': 1.0, 'psnr': 25.0}},
          'recent': {'steps': [40], **metrics}, 'per_image': [row, row]}


def mutated(record, path: list, value):
  """`record` with the value at `path` (keys, or list indices modulo the length) replaced;
  where the path leaves the record, the last place it reached is changed."""
  record = json.loads(json.dumps(record))
  node = record
  for key in path[:-1]:
    if isinstance(node, list) and node and isinstance(key, int):
      node = node[key % len(node)]
    elif isinstance(node, dict) and key in node:
      node = node[key]
  last = path[-1]
  if isinstance(node, dict):
    node[str(last)] = value
  elif isinstance(node, list) and node and isinstance(last, int):
    node[last % len(node)] = value
  else:
    return value
  return record


KEYS = st.sampled_from(['arg', 'seconds', 'results', 'step', 'E_R', 'psnr', 'recent',
                        'reference', 'identity', 'per_image', 'format', 'sets', 'arch',
                        'natural_unseen', 0, 1])
RECORD = st.one_of(JSON, st.tuples(st.lists(KEYS, min_size=1, max_size=4), JSON))


def materialize(drawn, valid):
  """A drawn record: random JSON, or a valid record with one place changed."""
  return mutated(valid, *drawn) if isinstance(drawn, tuple) else drawn


@hypothesis.settings(max_examples=300, **SETTINGS)
@hypothesis.given(done=RECORD, config=RECORD, evaluation=RECORD, packed=st.booleans(),
                  raw=st.one_of(st.none(), st.binary(max_size=20)))
def test_any_study_records_read_as_done_or_not_done_and_named(tmp_path_factory, done,
                                                               config, evaluation, packed,
                                                               raw):
  out = tmp_path_factory.mktemp('study')
  folder = StudyFolder(out).point('resnet_medium_8_scale-smoke_seed-0')
  folder.eval_dir.mkdir(parents=True)
  good_done = {'arg': 'resnet,medium,8,scale=smoke', 'seconds': 3.0,
               'results': ['natural_unseen.json']}
  good_config = json.loads(grid.get_config(SMOKE_POINT.split(':')[1]).to_json())
  evaluation = materialize(evaluation, valid_eval_record())
  (folder.path / 'done.json').write_text(json.dumps(materialize(done, good_done)))
  (folder.path / 'config.json').write_text(json.dumps(materialize(config, good_config)))
  if packed:
    folder.results_file.write_text(json.dumps(materialize(
        evaluation, {'format': 1, 'sets': {'natural_unseen': valid_eval_record()}})))
  else:
    (folder.eval_dir / 'natural_unseen.json').write_text(json.dumps(evaluation))
  if raw is not None:  # bytes that may not be JSON at all, in one of the records
    (folder.path / 'done.json').write_bytes(raw)
  before = {p: p.read_bytes() for p in folder.path.rglob('*') if p.is_file()}

  done_now = folder.is_done()
  rows = status.point_states(out)
  assert len(rows) == 1 and rows[0]['state'] == ('done' if done_now else rows[0]['state'])
  points, not_run = results.load_points(out)
  assert len(points) + len(not_run) == 1
  for row in results.result_rows(points):
    assert row.point == folder.name
  if not done_now:
    assert rows[0]['state'] != 'done'
  else:
    DoneRecord.parse(json.loads((folder.path / 'done.json').read_text()))
  assert {p: p.read_bytes() for p in folder.path.rglob('*') if p.is_file()} == before


def test_study_commands_on_damaged_records_are_one_line_or_a_table(tmp_path):
  records = []

  @hypothesis.settings(max_examples=25, **SETTINGS)
  @hypothesis.given(done=RECORD, config=RECORD)
  def collect(done, config):
    records.append((done, config))

  collect()
  for k, (done, config) in enumerate(records):
    folder = StudyFolder(tmp_path).point(f'resnet_medium_8_scale-smoke_seed-{k}')
    folder.path.mkdir(parents=True)
    (folder.path / 'done.json').write_text(json.dumps(materialize(
        done, {'arg': f'resnet,medium,8,scale=smoke,seed={k}', 'seconds': 1.0})))
    (folder.path / 'config.json').write_text(json.dumps(materialize(config, {'arch': 'x'})))
  listed, reported = run_commands('jaxderain.study', ['status', f'--out={tmp_path}'],
                                  ['report', f'--out={tmp_path}'])
  assert listed.returncode == 0 and 'Traceback' not in listed.stderr, listed.stderr[-2000:]
  assert all(f'seed-{k}' in listed.stdout for k in range(len(records)))  # each named
  assert reported.returncode == 0 or one_error_line(reported), reported.stderr[-2000:]


# Files to derain ------------------------------------------------------------------------

MODES = ['1', 'L', 'LA', 'P', 'RGB', 'RGBA', 'I;16', 'I', 'F', 'CMYK']
# Suffixes derain reads, and one it leaves alone (.gif: not an input).
FORMATS = {'png': 'PNG', 'jpg': 'JPEG', 'jpeg': 'JPEG', 'bmp': 'BMP', 'tif': 'TIFF',
           'tiff': 'TIFF', 'webp': 'WEBP', 'gif': 'GIF'}


def encoded(mode: str, suffix: str, height: int, width: int, seed: int) -> bytes | None:
  """An image of `mode` as a `suffix` file, or None where PIL cannot write that pair."""
  rng = np.random.default_rng(seed)
  base = Image.fromarray(rng.integers(0, 256, (height, width, 4), np.uint8), 'RGBA')
  image = base.convert(mode) if mode not in ('I;16', 'I', 'F') else Image.fromarray(
      rng.integers(0, 65536, (height, width)).astype(
          {'I;16': np.uint16, 'I': np.int32, 'F': np.float32}[mode]))
  buffer = io.BytesIO()
  try:
    image.save(buffer, FORMATS[suffix])
  except (OSError, ValueError, KeyError):
    return None
  return buffer.getvalue()


FILES = st.one_of(
    st.tuples(st.sampled_from(sorted(FORMATS)), st.binary(max_size=64)),
    st.builds(lambda mode, suffix, h, w, seed, cut: (suffix, (mode, h, w, seed, cut)),
              st.sampled_from(MODES), st.sampled_from(sorted(FORMATS)),
              st.integers(1, 40), st.integers(1, 40), st.integers(0, 9),
              st.one_of(st.none(), st.floats(0.1, 0.95))))


def test_any_files_to_derain_are_written_or_skipped_by_name(smoke_workdir, tmp_path):
  drawn = []

  @hypothesis.settings(max_examples=40, **SETTINGS)
  @hypothesis.given(file=FILES)
  def collect(file):
    drawn.append(file)

  collect()
  folder = tmp_path / 'in'
  folder.mkdir()
  for k, (suffix, content) in enumerate(drawn):
    if isinstance(content, tuple):
      mode, height, width, seed, cut = content
      content = encoded(mode, suffix, height, width, seed)
      if content is None:
        continue
      if cut is not None:  # cut short
        content = content[:max(1, math.floor(len(content) * cut))]
    (folder / f'{k:02d}.{suffix}').write_bytes(content)
  inputs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
  result, = run_commands('jaxderain.derain', [
      f'--workdir={smoke_workdir}', f'--input={folder}', f'--output={tmp_path / "out"}',
      '--tile=32', '--overlap=8'])
  assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
          for p in folder.iterdir()} == inputs
  assert 'Traceback' not in result.stderr and 'Warning:' not in result.stderr, (
      result.stderr[-3000:])
  if result.returncode != 0:
    assert one_error_line(result), result.stderr[-3000:]
    return
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  written = sorted(p.name for p in (tmp_path / 'out').glob('*.png'))
  assert summary['written'] == len(written)
  derainable = [name for name in inputs if pathlib.Path(name).suffix in IMAGE_SUFFIXES]
  assert summary['written'] + len(summary['skipped']) == len(derainable)
  for name in written:
    with Image.open(tmp_path / 'out' / name) as image:
      image.load()
