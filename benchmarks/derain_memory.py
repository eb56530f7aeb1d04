"""Peak resident memory of the derain command on a large photo against a 1x1 one.

  python -m benchmarks.derain_memory [--workdir=runs/smoke] [--size=6000x4000]
                                     [--out=benchmarks/results/derain_memory.json]

Makes a SIZE JPEG (scikit-image's astronaut scaled up, so it compresses like a photo) and
a 1x1 JPEG, runs `python -m jaxderain.derain` on each in a fresh child process, and reads
the child's peak resident memory (VmHWM in /proc/self/status, printed at exit by a small
wrapper). Both runs restore the same model and compile and run the same (4, 256, 256, 3)
tile batch, so the difference is what the image's size costs: the decoded image, one band
of blend sums, the PNG rows in flight. Without --workdir a smoke model is trained first
(launch.py, about half a minute). Linux only (VmHWM).
"""

import os
import sys


import json  # pylint: disable=g-import-not-at-top
import pathlib
import platform
import subprocess
import tempfile
import time

import skimage
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE_CONFIG = 'configs/grid.py:resnet,medium,8,scale=smoke'

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained run (default: train a smoke one).')
_SIZE = flags.DEFINE_string('size', '6000x4000', 'Large image, WIDTHxHEIGHT pixels.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/derain_memory.json', 'JSON output.')

# Runs `python -m jaxderain.derain ARGS` and prints the process's peak resident memory at
# exit (VmHWM: ru_maxrss would carry the parent's peak over fork and exec).
_CHILD = """
import atexit, pathlib, runpy, sys

def report_peak():
  status = pathlib.Path('/proc/self/status').read_text().splitlines()
  kilobytes = int(next(l for l in status if l.startswith('VmHWM:')).split()[1])
  print(f'peak_rss_bytes {kilobytes * 1024}', file=sys.stderr, flush=True)

atexit.register(report_peak)
sys.argv[0] = 'jaxderain.derain'
runpy.run_module('jaxderain.derain', run_name='__main__', alter_sys=True)
"""


def train_smoke(workdir) -> None:
  """A smoke run of the ResNet into WORKDIR (launch.py)."""
  subprocess.run([sys.executable, 'launch.py', f'--config={SMOKE_CONFIG}',
                  f'--workdir={workdir}'], cwd=ROOT, check=True, capture_output=True,
                 timeout=1200)


def photo_jpeg(path, width: int, height: int) -> pathlib.Path:
  """A width x height RGB JPEG (quality 90) of scikit-image's astronaut, scaled."""
  photo = Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.BICUBIC)
  photo.save(path, quality=90)
  return pathlib.Path(path)


def derain_peak_bytes(workdir, image, output) -> int:
  """Peak resident bytes of `python -m jaxderain.derain` on `image` in a fresh process."""
  result = subprocess.run([sys.executable, '-c', _CHILD, f'--workdir={workdir}',
                           f'--input={image}', f'--output={output}'], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)
  if result.returncode:
    raise RuntimeError(f'derain failed on {image}: {result.stderr[-2000:]}')
  line = next(l for l in result.stderr.splitlines() if l.startswith('peak_rss_bytes '))
  return int(line.split()[1])


def measure(workdir, folder, width: int, height: int) -> dict:
  """Peaks (bytes) of derain on a width x height JPEG and on a 1x1 one, their difference,
  and the difference over the large image's decoded uint8 RGB bytes."""
  folder = pathlib.Path(folder)
  tiny = photo_jpeg(folder / 'tiny.jpg', 1, 1)
  large = photo_jpeg(folder / 'large.jpg', width, height)
  start = time.perf_counter()
  large_peak = derain_peak_bytes(workdir, large, folder / 'out_large')
  seconds = time.perf_counter() - start
  tiny_peak = derain_peak_bytes(workdir, tiny, folder / 'out_tiny')
  decoded = width * height * 3
  return {'image': f'{width}x{height}', 'decoded_uint8_bytes': decoded,
          'peak_rss_bytes_large': large_peak, 'peak_rss_bytes_1x1': tiny_peak,
          'growth_bytes': large_peak - tiny_peak,
          'growth_over_decoded': (large_peak - tiny_peak) / decoded,
          'large_seconds': seconds}


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo) and core count."""
  cpuinfo = pathlib.Path('/proc/cpuinfo')
  names = [l.split(':', 1)[1].strip() for l in cpuinfo.read_text().splitlines()
           if l.startswith('model name')] if cpuinfo.exists() else []
  return f'{names[0] if names else platform.processor()}, {os.cpu_count()} cores'


def main(argv):
  del argv
  width, height = map(int, _SIZE.value.split('x'))
  with tempfile.TemporaryDirectory() as folder:
    workdir = _WORKDIR.value
    if workdir is None:
      workdir = pathlib.Path(folder) / 'smoke'
      train_smoke(workdir)
    result = {'benchmark': 'derain_memory', **measure(workdir, folder, width, height),
              'model': SMOKE_CONFIG if _WORKDIR.value is None else str(workdir),
              'command': 'python -m jaxderain.derain --workdir=W --input=IMAGE --output=DIR',
              'machine': cpu_model()}
  print(json.dumps(result), flush=True)
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
  app.run(main)
