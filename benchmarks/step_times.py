"""Copy the step-time figures `study plan` reads into the package (jaxderain/study/
step_times/), so an installed package plans without this repository:

  python -m benchmarks.step_times   # after models.py, vs_torch.py or an H100 vs_torch run

The figures stay measured here, in benchmarks/results/; tests/test_study_plan.py checks
the copies are the same files.
"""

import pathlib
import shutil

from jaxderain.study import plan

RESULTS = pathlib.Path(__file__).resolve().parent / 'results'


def main():
  for name in plan.STEP_TIME_FILES:
    shutil.copyfile(RESULTS / name, plan.STEP_TIMES / name)
    print(f'{RESULTS / name} -> {plan.STEP_TIMES / name}')


if __name__ == '__main__':
  main()
