"""The reference fabfile: atomicdeploy's tasks plus one stage task per stage of inventory.yml.

    fab --list
    fab demo deploy
    fab demo rollback

`ATOMICDEPLOY_INVENTORY=path` selects another inventory.
"""

import os
from pathlib import Path

from atomicdeploy import namespace

here = Path(__file__).with_name("inventory.yml")
ns = namespace(os.environ.get("ATOMICDEPLOY_INVENTORY") or here)
