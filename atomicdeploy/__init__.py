"""atomicdeploy: zero-downtime atomic deploys of PHP applications, as Fabric tasks.

Use it from a fabfile:

    from atomicdeploy import namespace
    ns = namespace()            # deploy, rollback, releases, unlock + one task per stage

or add the tasks to a collection you already have with `install(ns)`, or import
single tasks (`from atomicdeploy import deploy`) and run `fab deploy --stage prod`.
"""

from .config import Config, RunInfo
from .errors import AtomicDeployError, ConfigError, FleetError, LockHeld, RemoteError
from .inventory import HostConfig, Inventory, load
from .tasks import deploy, install, namespace, releases, rollback, stage_tasks, switch, unlock

__version__ = "0.1.0"

__all__ = [
    "AtomicDeployError",
    "Config",
    "ConfigError",
    "FleetError",
    "HostConfig",
    "Inventory",
    "LockHeld",
    "RemoteError",
    "RunInfo",
    "deploy",
    "install",
    "load",
    "namespace",
    "releases",
    "rollback",
    "stage_tasks",
    "switch",
    "unlock",
]
