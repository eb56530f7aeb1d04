"""One grid point of the study: `configs/grid.py:ARCH,RAIN_RANGE,N[,key=value...]`.

The file `--config=configs/grid.py:...` names; the grid itself (fields, defaults, scales)
is jaxderain/configs/grid.py.
"""

from jaxderain.configs.grid import get_config  # pylint: disable=unused-import
