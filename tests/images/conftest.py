"""Image tests: build the four images once per session, report their sizes at the end."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.images import podman as pm

SIZE_GOAL_MB = 150
# Why an image is over the goal, and what would shrink it (printed with the sizes).
SIZE_NOTES = {
    "consumer": "the questdb client imports numpy at load (numpy + its OpenBLAS ~55 MB) and "
    "its own extension is 22 MB even stripped; an ILP/HTTP writer without numpy would bring it "
    "near the producer's size",
    "api": "SQLAlchemy (29 MB with its compiled extensions and .pyc) and psycopg2-binary "
    "(11 MB of bundled libpq/OpenSSL); psycopg2 built against Debian's libpq, or a "
    "distroless final stage, would shrink it",
}
_sizes: dict[str, float] = {}


@pytest.fixture(scope="session")
def built_images() -> dict[str, str]:
    """service -> image name, built from images/<service>/Dockerfile on the local base."""
    missing = pm.missing_tools()
    if missing:
        pytest.fail(f"missing tools for the image tests: {', '.join(missing)}")
    if not pm.image_exists(pm.BASE_IMAGE):
        pytest.fail(f"the local base image {pm.BASE_IMAGE} is missing: run `make images-base`")
    tag = "test"
    log_dir = pm.ROOT / "test-artifacts" / "images"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BASE_IMAGE": pm.BASE_IMAGE, "TAG": tag, "BUILD_LOG_DIR": str(log_dir)}
    start = time.monotonic()
    result = subprocess.run([str(pm.ROOT / "images" / "build.sh"), *pm.SERVICES], cwd=pm.ROOT, env=env,
                            capture_output=True, text=True, timeout=1800)
    (log_dir / "build.txt").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        pytest.fail(f"images/build.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    images = {svc: pm.image_name(svc, tag) for svc in pm.SERVICES}
    for svc, image in images.items():
        _sizes[svc] = pm.inspect_image(image)["Size"] / 1e6
    _sizes["_build_s"] = time.monotonic() - start
    return images


def pytest_terminal_summary(terminalreporter):
    if not _sizes:
        return
    lines = [f"image sizes (goal <= {SIZE_GOAL_MB} MB; built in {_sizes['_build_s']:.0f} s):"]
    for svc in pm.SERVICES:
        if svc in _sizes:
            size = _sizes[svc]
            note = f"  over the goal: {SIZE_NOTES.get(svc, 'no note')}" if size > SIZE_GOAL_MB else ""
            lines.append(f"  gostream-{svc:<9} {size:6.0f} MB{note}")
    terminalreporter.write_sep("-", "container images")
    for line in lines:
        terminalreporter.write_line(line)
    out = pm.ROOT / "test-artifacts" / "images" / "sizes.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
