"""An existing fabfile that adopts atomicdeploy three ways (see the README, "Your fabfile").

    fab --list
    fab -r examples/existing --list  # from the repository root; or cd examples/existing
    fab app.demo app.deploy          # 2. the whole collection, under the name `app`
    fab ship --stage demo            # 3. your own task calling deploy()
    fab deploy --stage demo          # 1. a single task imported into your collection

The inventory is the repository's demo `inventory.yml`, or $ATOMICDEPLOY_INVENTORY.
"""

from __future__ import annotations

import os
from pathlib import Path

from invoke import Collection, task

import atomicdeploy
from atomicdeploy import Hooks
from atomicdeploy.tasks import deploy, releases, rollback

# This repository's demo inventory (stage `demo`), unless $ATOMICDEPLOY_INVENTORY says otherwise.
DEMO = Path(__file__).resolve().parents[2] / "inventory.yml"
INVENTORY = os.environ.get("ATOMICDEPLOY_INVENTORY") or str(DEMO)

# Python hooks: a function of (connection, config), at a named step.
hooks = Hooks()


@hooks.after("upload")
def stamp_build_info(c, cfg):
    """Write who built the release into it, before it can go live."""
    c.run(f"printf '%s\\n' {cfg.run.user!r} > {cfg.release_path}/BUILT_BY", in_stream=False)


@hooks.on_failure
def say_what_failed(c, cfg, error):
    print(f"[{cfg.host.name}] deploy of {cfg.release} failed: {error}")


@task
def hello(c):
    """A task this project had before atomicdeploy."""
    print("hello from the existing fabfile")


@task(help={"stage": "stage to ship to"})
def ship(c, stage="demo"):
    """3. Your own task: do your local work, then call atomicdeploy's deploy()."""
    print(f"building assets locally for {stage}")
    deploy(c, stage=stage, inventory=INVENTORY)


ns = Collection(hello, ship)
# 1. Single tasks, added to your own collection (they take --stage and --inventory).
ns.add_task(deploy)
ns.add_task(rollback)
ns.add_task(releases)
# 2. The whole collection, with one task per stage, under a name of your choice.
ns.add_collection(atomicdeploy.namespace(INVENTORY, hooks=hooks), name="app")
# The hooks reach the single tasks and ship() through the configuration.
ns.configure({"atomicdeploy": {"hooks": hooks, "inventory": INVENTORY}})
