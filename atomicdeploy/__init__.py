"""atomicdeploy: zero-downtime atomic deploys of PHP applications, as Fabric tasks.

Use it from a fabfile:

    from atomicdeploy import namespace
    ns = namespace()            # deploy, rollback, releases, unlock + one task per stage

or add the tasks to a collection you already have with `install(ns)`, or import
single tasks (`from atomicdeploy import deploy`) and run `fab deploy --stage prod`.
Hooks: `hooks = Hooks()`, `@hooks.after("upload")`, then `namespace(hooks=hooks)`.
"""

from .config import Config, RunInfo
from .errors import AtomicDeployError, ConfigError, FleetError, LockHeld, RemoteError
from .hooks import STEPS, Hooks
from .inventory import HostConfig, Inventory, load
from .memory import keep_memory_flat
from .tasks import (
    deploy,
    install,
    namespace,
    releases,
    rollback,
    stage_tasks,
    status,
    switch,
    tag_release,
    unlock,
)

__version__ = "0.1.0"

__all__ = [
    "STEPS",
    "AtomicDeployError",
    "Config",
    "ConfigError",
    "FleetError",
    "Hooks",
    "HostConfig",
    "Inventory",
    "LockHeld",
    "RemoteError",
    "RunInfo",
    "deploy",
    "install",
    "keep_memory_flat",
    "load",
    "namespace",
    "releases",
    "rollback",
    "stage_tasks",
    "status",
    "switch",
    "tag_release",
    "unlock",
]
