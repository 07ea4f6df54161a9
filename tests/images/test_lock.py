"""One lock for everything that installs: the virtualenv and every image hold exactly the
versions uv.lock names (images/requirements.sh exports them; pip checks their hashes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.images import podman as pm

# Installed to build or install the package, then removed from the images (their Dockerfiles).
BUILD_ONLY = {"setuptools"}
INSTALLED = ("import importlib.metadata as m, json; "
             "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$", re.M)


def locked(extra: str) -> dict[str, str]:
    """name -> version uv.lock gives an install of `extra` on this platform (markers applied:
    the images run the same Python on the same OS)."""
    result = subprocess.run([str(pm.ROOT / "images" / "requirements.sh"), extra], cwd=pm.ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"images/requirements.sh {extra} failed: {result.stderr[-2000:]}"
    pins = {canonicalize_name(name): version for name, version, marker in _PIN.findall(result.stdout)
            if not marker or Marker(marker).evaluate()}
    assert pins, f"no pins read from images/requirements.sh {extra}:\n{result.stdout[:500]}"
    return pins


def normalised(found: dict[str, str]) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in found.items()}


def test_the_virtualenv_holds_the_locked_versions():
    out = subprocess.run([sys.executable, "-c", INSTALLED], capture_output=True, text=True, check=True).stdout
    installed = normalised(json.loads(out))
    differing = {name: (version, installed.get(name)) for name, version in locked("dev").items()
                 if installed.get(name) != version}
    assert not differing, f"locked -> installed differ (run `make venv`): {differing}"


@pytest.mark.parametrize("service", pm.SERVICES)
def test_each_image_holds_exactly_the_locked_versions_of_its_service(built_images, service):
    out = pm.podman("run", "--rm", *pm.ULIMITS, "--entrypoint", "python3", built_images[service],
                    "-c", INSTALLED).stdout
    installed = normalised(json.loads(out))
    installed.pop("gostream")
    expected = {name: version for name, version in locked(service).items() if name not in BUILD_ONLY}
    assert installed == expected, (
        f"gostream-{service}: not in the lock {sorted(set(installed) - set(expected))}, "
        f"missing {sorted(set(expected) - set(installed))}, "
        f"other versions {sorted(n for n in set(installed) & set(expected) if installed[n] != expected[n])}")
