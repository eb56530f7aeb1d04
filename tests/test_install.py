"""The package stands alone: installed from a wheel (not editable) into a fresh virtual
environment, it trains a grid point and plans a grid from another folder."""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_an_installed_package_trains_and_plans_from_another_folder(tmp_path):
  source, wheels = tmp_path / 'source', tmp_path / 'wheels'
  venv, elsewhere = tmp_path / 'venv', tmp_path / 'elsewhere'
  shutil.copytree(ROOT / 'jaxderain', source / 'jaxderain',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('pyproject.toml', 'README.md'):  # what the build reads; it writes there too
    shutil.copy(ROOT / name, source / name)
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--wheel-dir', str(wheels), str(source)],
                 check=True, cwd=tmp_path)
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
  python = venv / 'bin' / 'python'
  site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                        capture_output=True, text=True, check=True).stdout.strip()
  (wheel,) = wheels.glob('jaxderain-*.whl')
  subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps',
                  '--target', site, str(wheel)], check=True)
  elsewhere.mkdir()
  # The dependencies come from this environment; the project only from the wheel (this
  # environment's editable install is not on the path: its .pth is not read from PYTHONPATH).
  env = {**os.environ, 'PYTHONPATH': sysconfig.get_paths()['purelib']}
  run = lambda *args: subprocess.run([python, *args], cwd=elsewhere, env=env,
                                     capture_output=True, text=True, check=False)
  where = run('-c', 'import jaxderain; print(jaxderain.__file__)')
  assert where.stdout.strip().startswith(site), where.stdout + where.stderr
  trained = run('-m', 'jaxderain.launch', '--config=configs/grid.py:resnet,medium,8,scale=smoke',
                '--workdir=run')
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert (elsewhere / 'run' / 'checkpoints').is_dir()
  planned = run('-m', 'jaxderain.study', 'plan', '--grid=claims', '--scale=cpu', '--gpus=0')
  assert planned.returncode == 0 and 'models.json [resnet]' in planned.stdout, planned.stderr
