"""Compile the engine's hot modules with mypyc into extensions next to their sources (docs/engine.md).

Usage::

    .venv/bin/python scripts/build_engine_native.py           # build if any source changed, else no-op
    .venv/bin/python scripts/build_engine_native.py --force   # rebuild
    .venv/bin/python scripts/build_engine_native.py --clean   # remove the extensions: pure Python again

Invariants:
- The ``.py`` sources stay the fallback and the specification: with no ``engine/*.so`` the engine is the
  interpreted one; the extensions (git-ignored) shadow the ``.py`` files only because CPython prefers an
  extension module over a source module in the same directory.
- Only ``COMPILED`` modules are compiled. ``engine.commands``, ``engine.events`` and ``engine.state`` hold
  ``msgspec.Struct`` classes with class keywords (``tag``, ``array_like``, ``gc``) that mypyc silently drops,
  which breaks the command decoder and changes the snapshot bytes; they stay interpreted.
- The build is skipped when a stamp records the same sources, mypy version and interpreter; a stale build
  is never left half-written (the extensions are copied in only after every module compiled).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPILED = ("engine/units.py", "engine/book.py", "engine/engine.py")
GROUP = "engine.native"  # the shared runtime library lands at engine/native__mypyc.<abi>.so
BUILD = ROOT / ".run" / "mypyc-build"
STAMP = ROOT / "engine" / ".native-stamp"
MYPY_CONFIG = """\
[mypy]
python_version = {ver}
strict = True
cache_dir = {cache}
"""


def _fingerprint() -> str:
    import mypy.version

    h = hashlib.sha256()
    h.update(f"{mypy.version.__version__}|{sys.version}|{sysconfig.get_config_var('EXT_SUFFIX')}".encode())
    for rel in (*COMPILED, "scripts/build_engine_native.py"):
        h.update(rel.encode())
        h.update((ROOT / rel).read_bytes())
    return h.hexdigest()


def extensions() -> list[Path]:
    """Every mypyc artefact currently shadowing an engine source."""
    return sorted((ROOT / "engine").glob("*.so"))


def clean() -> None:
    for so in extensions():
        so.unlink()
    STAMP.unlink(missing_ok=True)


def build() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    shutil.rmtree(BUILD / "out", ignore_errors=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    config = BUILD / "mypy.ini"
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    config.write_text(MYPY_CONFIG.format(ver=ver, cache=BUILD / "mypy_cache"))
    out = BUILD / "out"
    ext = mypycify(
        [*COMPILED, "--config-file", str(config)],
        opt_level="3",
        group_name=GROUP,
        target_dir=str(BUILD / "c"),
    )
    setup(
        name="engine-native",
        packages=[],
        py_modules=[],
        ext_modules=ext,
        script_args=["-q", "build_ext", "--build-lib", str(out), "--build-temp", str(BUILD / "tmp")],
    )
    built = sorted((out / "engine").glob("*.so"))
    if len(built) != len(COMPILED) + 1:
        raise SystemExit(
            f"mypyc build produced {[p.name for p in built]}, expected {len(COMPILED) + 1} modules"
        )
    clean()
    for so in built:
        shutil.copy2(so, ROOT / "engine" / so.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the sources are unchanged")
    parser.add_argument("--clean", action="store_true", help="remove the extensions (pure-Python engine)")
    args = parser.parse_args()
    if args.clean:
        clean()
        print("engine: pure Python (extensions removed)")
        return
    fp = _fingerprint()
    if not args.force and extensions() and STAMP.exists() and STAMP.read_text() == fp:
        print("engine: native build up to date")
        return
    build()
    STAMP.write_text(fp)
    print(f"engine: compiled {', '.join(COMPILED)} with mypyc")


if __name__ == "__main__":
    import os

    os.chdir(ROOT)  # mypycify takes paths relative to the repository root
    main()
