"""`atomicdeploy` console script: the same tasks as `fab`, without writing a fabfile."""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .fromdeployer import from_deployer
from .tasks import namespace

_tasks = namespace()
_tasks.add_task(from_deployer)

program = Fab(
    name="atomicdeploy",
    binary="atomicdeploy",
    version=__version__,
    namespace=_tasks,
    executor_class=Executor,
    config_class=Config,
)
