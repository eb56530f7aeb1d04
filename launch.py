"""Train or evaluate one grid point (jaxderain/launch.py).

  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo
  python launch.py --config=configs/grid.py:resnet,medium,64,scale=cpu --workdir=runs/demo \
      --mode=eval
"""

from jaxderain.launch import main, run  # pylint: disable=unused-import (main: tests)

if __name__ == '__main__':
  run()
