"""podman as this machine allows it, for the image tests.

Flags that work here (root, no systemd, limits that cannot be raised): the runc runtime,
cgroupfs, and nofile/nproc ulimits lowered to 1024/4096 on every container.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/gostream-base:bookworm"
# The runtime stages' base: BASE_IMAGE pruned of what a Python service never runs.
RUNTIME_IMAGE = f"{BASE_IMAGE}-runtime"
SERVICES = ("producer", "consumer", "api", "frontend")
# Every image at most this big (as podman reports it: the uncompressed layers).
SIZE_LIMIT_MB = 150
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
# What the tests need on the machine, and the make target that installs it.
TOOLS = {"podman": "make images-deps", "runc": "make images-deps"}


def missing_tools() -> list[str]:
    return [f"{tool} (install: {target})" for tool, target in TOOLS.items() if shutil.which(tool) is None]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def inspect_image(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]


def image_size_mb(image: str) -> float:
    return inspect_image(image)["Size"] / 1e6


def image_name(service: str, tag: str) -> str:
    return f"localhost/gostream-{service}:{tag}"
