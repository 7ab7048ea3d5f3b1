"""Load and validate `inventory.yml` into frozen `HostConfig` values.

Pure apart from reading the file. The format is Deployer's YAML hosts format: a
`config:` map of defaults and a `hosts:` map whose entries may override any key. Every
mistake is found here, before any host is contacted, and reported as one line naming the
key and host. `checks` holds the value checks, `schema` the keys (written once, as
`HostConfig`'s fields), `refs` the `{{key}}` references, `loader` the strict YAML loading.
"""

from __future__ import annotations

from .checks import (  # noqa: F401
    OPCACHE_STRATEGIES,
    WRITABLE_MODES,
    HealthCheck,
    NginxConfig,
    OpcacheConfig,
)
from .loader import MAX_INVENTORY_BYTES, load, parse  # noqa: F401
from .refs import MAX_EXPANDED_NODES, MAX_VALUE_CHARS  # noqa: F401
from .schema import KEYS, HostConfig, Inventory, Key  # noqa: F401
