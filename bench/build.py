"""Benchmark: a build run once on the controller (`build:`) against the same build run on
every host as a hook (Deployer's `deploy:vendors` way), on the same loopback sshd hosts.

The build is `composer install` (Debian's composer, a composer.json with no dependencies, so
no network) plus an asset step that spends about two seconds of CPU writing 300 files, a small
stand-in for `npm run build`. Each method
deploys a new commit-like change `--rounds` times; the table shows the median deploy time, and
the CPU seconds the whole machine spent (the fake hosts share this machine's cores, so a build
on every host shows up there).
Not a test: it prints figures. Usage: python bench/build.py [--hosts 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atomicdeploy.testing import LocalHosts  # noqa: E402

# About two seconds of CPU writing 300 files: a small stand-in for `npm run build` (real
# ones take far longer).
ASSETS = (
    'php -r \'@mkdir("assets"); for ($i = 0; $i < 300; $i++) { $h = "";'
    " for ($j = 0; $j < 20000; $j++) { $h = md5($h . $j); }"
    ' file_put_contents("assets/a$i.js", str_repeat($h, 400)); }\''
)
COMPOSER = (
    "COMPOSER_ALLOW_SUPERUSER=1 COMPOSER_HOME=/tmp/atomicdeploy-bench-composer"
    " composer install --no-dev --no-interaction --optimize-autoloader --quiet"
)
FABFILE = "from atomicdeploy import namespace\n\nns = namespace()\n"


def machine_busy() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def project(base: Path, hosts, method: str) -> Path:
    d = base / method
    (d / "app" / "public").mkdir(parents=True)
    (d / "app" / "composer.json").write_text("{}\n")
    (d / "fabfile.py").write_text(FABFILE)
    config: dict = {"source": "app", "known_hosts": str(base / "known_hosts")}
    if method == "build once here":
        config["build"] = [COMPOSER, ASSETS]
    else:
        config["hooks"] = {"after_vendors": [COMPOSER, ASSETS]}
    entries = {}
    for h in hosts:
        entry = h.inventory_entry("bench")
        entry["deploy_path"] = str(base / "srv" / method.replace(" ", "-") / h.name)
        entries[h.name] = entry
    (d / "inventory.yml").write_text(yaml.safe_dump({"config": config, "hosts": entries}))
    return d


def deploy(d: Path, round_: int) -> tuple[float, float]:
    (d / "app" / "public" / "index.php").write_text(f"<?php echo 'version {round_}';\n")
    busy, start = machine_busy(), time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "fabric", "bench", "deploy"],
        cwd=d,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(d / "cache")},
    )
    took, cpu = time.monotonic() - start, machine_busy() - busy
    if proc.returncode:
        raise SystemExit(f"deploy failed:\n{proc.stdout}\n{proc.stderr}")
    if os.environ.get("BENCH_VERBOSE"):
        print(proc.stdout)
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    methods = ("build once here", "build on every host (hook)")
    with tempfile.TemporaryDirectory(prefix="atomicdeploy-bench-build-") as tmp:
        base = Path(tmp)
        with LocalHosts(base / "hosts", args.hosts) as hosts:
            dirs = {m: project(base, hosts, m) for m in methods}
            for m in methods:
                deploy(dirs[m], 0)  # first deploys: not measured
            figures: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
            for r in range(1, args.rounds + 1):
                for m in methods:  # interleaved: both see the same machine state
                    figures[m].append(deploy(dirs[m], r))
    print(f"| method ({args.hosts} hosts, median of {args.rounds}) | deploy s | machine CPU s |")
    print("|---|---|---|")
    for m in methods:
        took = statistics.median(t for t, _ in figures[m])
        cpu = statistics.median(c for _, c in figures[m])
        print(f"| {m} | {took:.2f} | {cpu:.2f} |")
    once, hook = (statistics.median(t for t, _ in figures[m]) for m in methods)
    print(f"build once here: {hook / once:.1f}x faster than a build on every host")


if __name__ == "__main__":
    main()
