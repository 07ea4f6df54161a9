"""Image tests: build the four images once per session, report their sizes at the end."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.images import podman as pm

_sizes: dict[str, float] = {}


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """service -> image name, built from images/<service>/Dockerfile on the local base."""
    missing = pm.missing_tools()
    if missing:
        pytest.fail(f"missing tools for the image tests: {', '.join(missing)}")
    for base in (pm.BASE_IMAGE, pm.RUNTIME_IMAGE):
        if not pm.image_exists(base):
            pytest.fail(f"the local base image {base} is missing: run `make images-base`")
    tag = "test"
    log_dir = pm.ROOT / "test-artifacts" / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BASE_IMAGE": pm.BASE_IMAGE, "RUNTIME_IMAGE": pm.RUNTIME_IMAGE, "TAG": tag,
           "BUILD_LOG_DIR": str(log_dir)}
    start = time.monotonic()
    result = subprocess.run([str(pm.ROOT / "images" / "build.sh"), *pm.SERVICES], cwd=pm.ROOT, env=env,
                            capture_output=True, text=True, timeout=1800)
    (log_dir / "build.txt").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(f"images/build.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    images = {svc: pm.image_name(svc, tag) for svc in pm.SERVICES}
    for svc, image in images.items():
        _sizes[svc] = pm.image_size_mb(image)
    _sizes["_runtime"] = pm.image_size_mb(pm.RUNTIME_IMAGE)
    _sizes["_build_s"] = time.monotonic() - start
    return images


def pytest_terminal_summary(terminalreporter):
    if not _sizes:
        return
    lines = [f"image sizes (limit {pm.SIZE_LIMIT_MB} MB; runtime base {_sizes['_runtime']:.0f} MB; "
             f"built in {_sizes['_build_s']:.0f} s):"]
    for svc in pm.SERVICES:
        if svc in _sizes:
            over = "  over the limit" if _sizes[svc] > pm.SIZE_LIMIT_MB else ""
            lines.append(f"  gostream-{svc:<9} {_sizes[svc]:6.0f} MB{over}")
    terminalreporter.write_sep("-", "container images")
    for line in lines:
        terminalreporter.write_line(line)
    out = pm.ROOT / "test-artifacts" / "images" / "sizes.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
