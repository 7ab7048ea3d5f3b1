"""`atomicdeploy` console script: the same tasks as `fab`, without writing a fabfile."""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab

from . import __version__
from .tasks import namespace

program = Fab(
    name="atomicdeploy",
    binary="atomicdeploy",
    version=__version__,
    namespace=namespace(),
    executor_class=Executor,
    config_class=Config,
)
