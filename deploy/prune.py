"""Delete what deploy/prune.txt lists from a site-packages folder (the image's build stage runs it on /opt/site),
then import the given modules from that folder in a fresh interpreter, so a wrong entry fails the build.

    python3 prune.py /opt/site [--check MODULE ...]    # MODULE? : checked only if its package is installed

The list is the file named by $PRUNE (the Containerfile's ARG), else prune.txt next to this script;
PRUNE=/dev/null prunes nothing. Each line is a glob relative to the folder; a line that matches nothing is skipped
(other versions, other bases). Prints what went and the bytes freed. Standard library only: it runs on the bare
base image, with no shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def patterns(list_file: Path) -> list[str]:
    """The globs in `list_file`, without comments and blank lines."""
    out = []
    for line in list_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if line.startswith("/") or ".." in Path(line).parts:
                raise ValueError(f"{list_file}: {line!r} must stay inside the folder")
            out.append(line)
    return out


def size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def prune(site: Path, list_file: Path) -> int:
    """Delete every match of `list_file`'s globs under `site`; the bytes freed."""
    if not site.is_dir():
        raise FileNotFoundError(f"no folder at {site}")
    freed = 0
    for pattern in patterns(list_file):
        count, before = 0, freed
        for path in sorted(site.glob(pattern)):
            if not (path.exists() or path.is_symlink()):  # inside a folder an earlier match removed
                continue
            freed += size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            count += 1
            parent = path.parent  # a namespace folder left empty (google/ without protobuf) goes too
            while parent != site and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        if count:
            print(f"pruned {pattern}: {count} path(s), {(freed - before) / 1e6:.2f} MB")
    print(f"prune: {freed / 1e6:.1f} MB freed from {site}")
    return freed


def check_imports(site: Path, modules: list[str]) -> None:
    """Import `modules` from `site` in a fresh interpreter; `name?` only if its top-level package is there."""
    code = (
        "import importlib, importlib.util, sys\n"
        "for m in sys.argv[1:]:\n"
        "    if m.endswith('?'):\n"
        "        m = m[:-1]\n"
        "        if importlib.util.find_spec(m.split('.')[0]) is None:\n"
        "            continue\n"
        "    importlib.import_module(m)\n"
        "    print('prune: imports', m)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run([sys.executable, "-c", code, *modules], env=env, check=True)


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0].startswith("-") or (len(argv) > 1 and argv[1] != "--check"):
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    site = Path(argv[0])
    prune(site, Path(os.environ.get("PRUNE") or Path(__file__).with_name("prune.txt")))
    check_imports(site, argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
