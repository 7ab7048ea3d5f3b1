"""The reference fabfile: atomicdeploy's tasks, with one stage task per stage of inventory.yml.

    fab --list
    fab demo deploy
    fab demo rollback
"""

from atomicdeploy import namespace

ns = namespace()
