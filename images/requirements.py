"""Print the requirements of one service, from pyproject.toml, one per line.

`--build` adds the build-system requirements, so the package itself can then be
installed with --no-build-isolation, without going back to PyPI when only the source
changed.

Used by the image builds: `python3 requirements.py producer > requirements.txt` gives
the core dependencies plus the `producer` extra, so the dependency layer of an image is
installed (and cached) before the source is copied, and only that service's packages
end up in it. References to the distribution itself (``gostream[...]``) are followed.
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (has: {', '.join(sorted(optional))})")
        seen.add(extra)
        for req in optional[extra]:
            self_ref = re.fullmatch(rf"\s*{re.escape(name)}\s*\[([^\]]*)\]\s*", req)
            if self_ref:
                pending.extend(e.strip() for e in self_ref.group(1).split(",") if e.strip())
            else:
                found.append(req)
    return list(dict.fromkeys(found))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(f"usage: {argv[0]} EXTRA [EXTRA...] [--pyproject PATH]", file=sys.stderr)
        return 2
    path = "pyproject.toml"
    args = argv[1:]
    build = "--build" in args
    args = [a for a in args if a != "--build"]
    if "--pyproject" in args:
        i = args.index("--pyproject")
        path = args[i + 1]
        del args[i : i + 2]
    with open(path, "rb") as f:
        data = tomllib.load(f)
    found = requirements(data["project"], args)
    if build:
        found += data.get("build-system", {}).get("requires", [])
    print("\n".join(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
