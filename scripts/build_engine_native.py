"""Compile the engine's hot modules with mypyc (docs/engine.md), then build and install the Rust engine.

Usage::

    .venv/bin/python scripts/build_engine_native.py               # build whatever changed, else no-op
    .venv/bin/python scripts/build_engine_native.py --force       # rebuild both
    .venv/bin/python scripts/build_engine_native.py --clean       # remove the mypyc extensions: pure Python
    .venv/bin/python scripts/build_engine_native.py --mypyc-only  # skip the Rust engine
    .venv/bin/python scripts/build_engine_native.py --native-only # only the Rust engine

Two artefacts:
- mypyc: ``engine/units.py``, ``engine/book.py``, ``engine/engine.py`` compiled into extensions next to them.
- ``engine_native`` (the Rust/PyO3 twin of ``engine.Engine``, crate ``engine_native/``): a wheel built by
  maturin (``cargo`` from PATH or ``~/.cargo/bin``), installed into this interpreter's environment and into
  the bench environment ``.run/bench-venv`` when it exists (``bench.books`` runs it as ``engine-native``).
  maturin is a development requirement (in ``.venv``; the Docker build stage puts it on PATH); without maturin
  or cargo the build fails and says so (``ENGINE_IMPLEMENTATION=native``, the default, needs the extension).

Invariants:
- The ``.py`` sources stay the fallback and the specification: with no ``engine/*.so`` the engine is the
  interpreted one; the extensions (git-ignored) shadow the ``.py`` files only because CPython prefers an
  extension module over a source module in the same directory.
- Only ``COMPILED`` modules are compiled. ``engine.commands``, ``engine.events`` and ``engine.state`` hold
  ``msgspec.Struct`` classes with class keywords (``tag``, ``array_like``, ``gc``) that mypyc silently drops,
  which breaks the command decoder and changes the snapshot bytes; they stay interpreted.
- The build is skipped when a stamp records the same sources, mypy version and interpreter; a stale build
  is never left half-written (the extensions are copied in only after every module compiled).
- The Rust wheel is rebuilt only when the crate's sources, ``Cargo.lock``, the cargo/rustc/maturin versions or
  the interpreter changed (``.run/engine-native/fingerprint``), and installed into an environment only when
  that environment's stamp differs or it cannot import ``engine_native``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
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


CRATE = ROOT / "engine_native"
NATIVE = ROOT / ".run" / "engine-native"  # the built wheel, its fingerprint and one install stamp per venv
BENCH_PYTHON = ROOT / ".run" / "bench-venv" / "bin" / "python"


def _crate_files() -> list[Path]:
    fixed = [CRATE / n for n in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "engine_native.pyi")]
    return fixed + sorted((CRATE / "src").rglob("*.rs"))


# Debian 12's current Rust toolchain (bookworm and bookworm-security; the plain ``cargo``/``rustc`` packages
# are 1.63, too old for PyO3): installs /usr/bin/cargo and /usr/bin/rustc. Also what the Docker build stage uses.
DEBIAN_RUST = ("cargo-web", "rustc-web")


def find_cargo() -> Path:
    """cargo from PATH, else rustup's default location, else Debian's packages (installed as PostgreSQL is)."""
    found = shutil.which("cargo")
    if found:
        return Path(found)
    home = Path.home() / ".cargo" / "bin" / "cargo"
    if home.exists():
        return home
    # The same helper scripts/services.sh installs PostgreSQL and Redis with (root: apt-get; else it says what
    # to run).
    script = f'source "{ROOT}/scripts/lib/common.sh" && apt_install engine_native {" ".join(DEBIAN_RUST)}'
    if subprocess.run(["bash", "-c", script], check=False).returncode == 0:  # noqa: S603, S607 - fixed script
        found = shutil.which("cargo")
        if found:
            return Path(found)
    raise SystemExit(
        "engine_native: cargo not found on PATH or at ~/.cargo/bin and Debian's "
        f"{' and '.join(DEBIAN_RUST)} could not be installed. Install a Rust toolchain (rustup, stable, or "
        "`apt-get install cargo-web rustc-web`) to build the native engine, or pass --mypyc-only to skip it."
    )


def maturin_command() -> list[str]:
    """maturin from this interpreter's environment (``.venv``), else from PATH (the Docker build stage)."""
    if importlib.util.find_spec("maturin") is not None and (Path(sys.executable).parent / "maturin").exists():
        return [str(Path(sys.executable).parent / "maturin")]
    found = shutil.which("maturin")
    if found:
        return [found]
    raise SystemExit(
        "engine_native: maturin not found (a development requirement: `make venv` installs it), "
        "or pass --mypyc-only to skip the native engine."
    )


def _tool_version(*cmd: str | Path) -> str:
    argv = [str(c) for c in cmd]
    res = subprocess.run(argv, capture_output=True, text=True, check=True)  # noqa: S603 - our own tools
    return res.stdout.strip()


def _native_fingerprint(cargo: Path) -> str:
    h = hashlib.sha256()
    for line in (
        _tool_version(cargo, "--version"),
        _tool_version(cargo.parent / "rustc", "--version") if (cargo.parent / "rustc").exists() else "",
        _tool_version(*maturin_command(), "--version"),
        sys.version,
        str(sysconfig.get_config_var("EXT_SUFFIX")),
    ):
        h.update(line.encode() + b"\n")
    for path in _crate_files():
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _wheel(fp: str, cargo: Path, force: bool) -> Path:
    """The wheel for fingerprint ``fp``: the cached one, or a fresh ``maturin build --release``."""
    wheels = NATIVE / "wheel"
    stamp = NATIVE / "fingerprint"
    cached = sorted(wheels.glob("engine_native-*.whl"))
    if not force and len(cached) == 1 and stamp.exists() and stamp.read_text() == fp:
        return cached[0]
    shutil.rmtree(wheels, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{cargo.parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CARGO_BUILD_JOBS", "2")  # the 2-core box is shared
    subprocess.run(  # noqa: S603 - our own toolchain and venv interpreters
        [*maturin_command(), "build", "--release", "--quiet",
         "--manifest-path", str(CRATE / "Cargo.toml"), "--interpreter", sys.executable, "--out", str(wheels)],
        check=True,
        env=env,
    )  # fmt: skip
    built = sorted(wheels.glob("engine_native-*.whl"))
    if len(built) != 1:
        raise SystemExit(f"engine_native: maturin produced {[p.name for p in built]}, expected one wheel")
    stamp.write_text(fp)
    return built[0]


def _imports_native(python: Path) -> bool:
    res = subprocess.run([str(python), "-c", "import engine_native"], capture_output=True, cwd=NATIVE)  # noqa: S603 - our own toolchain and venv interpreters
    return res.returncode == 0


def _install(python: Path, wheel: Path, fp: str, force: bool) -> bool:
    """Install ``wheel`` into ``python``'s environment unless its stamp says it is there. True if installed."""
    prefix = _tool_version(python, "-c", "import sys; print(sys.prefix)")
    stamp = NATIVE / "installed" / hashlib.sha256(prefix.encode()).hexdigest()[:16]
    if not force and stamp.exists() and stamp.read_text() == fp and _imports_native(python):
        return False
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--force-reinstall", "--no-deps", "--no-index", str(wheel)], check=True)  # noqa: S603 - our own toolchain and venv interpreters
    if not _imports_native(python):
        raise SystemExit(f"engine_native: installed into {prefix} but it does not import there")
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp)
    return True


def build_native(force: bool) -> None:
    """Build (if changed) and install the Rust engine here and into the bench venv (if it exists)."""
    maturin_command()  # fails early, before any cargo install, when maturin is missing
    cargo = find_cargo()
    NATIVE.mkdir(parents=True, exist_ok=True)
    fp = _native_fingerprint(cargo)
    wheel = _wheel(fp, cargo, force)
    targets = [Path(sys.executable)]
    if BENCH_PYTHON.exists():
        bench_ver = _tool_version(BENCH_PYTHON, "-c", "import sys; print(sys.version_info[:2])")
        if bench_ver == str(sys.version_info[:2]):
            targets.append(BENCH_PYTHON)
        else:
            print(f"engine_native: {BENCH_PYTHON} is Python {bench_ver}, not this one: not installed there")
    for python in targets:
        done = _install(python, wheel, fp, force)
        print(f"engine_native: {'installed' if done else 'up to date'} in {python}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the sources are unchanged")
    parser.add_argument("--clean", action="store_true", help="remove the extensions (pure-Python engine)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--mypyc-only", action="store_true", help="do not build the Rust engine")
    only.add_argument("--native-only", action="store_true", help="only build/install the Rust engine")
    args = parser.parse_args()
    if args.clean:
        clean()
        print("engine: pure Python (extensions removed)")
        return
    if not args.native_only:
        fp = _fingerprint()
        if not args.force and extensions() and STAMP.exists() and STAMP.read_text() == fp:
            print("engine: native build up to date")
        else:
            build()
            STAMP.write_text(fp)
            print(f"engine: compiled {', '.join(COMPILED)} with mypyc")
    if not args.mypyc_only:
        build_native(args.force)


if __name__ == "__main__":
    import os

    os.chdir(ROOT)  # mypycify takes paths relative to the repository root
    main()
