"""Build a Baton worker plugin (a WebAssembly component) from a Python module.

::

    python -m baton_worker.build app.py -o plugins/greeter.wasm

``app.py`` registers its commands with :func:`baton_worker.command`, as for the bus worker.
This writes a small entry module that imports it and :class:`baton_worker.component.Worker`,
then runs `componentize-py <https://pypi.org/project/componentize-py/>`_ on it against the
``worker-plugin`` world of the contract in ``wit/``: the result is one ``.wasm`` file (CPython
inside, about 18 MB) for the host's plugin directory. CPython is snapshotted at build time, so
the module and what it imports are imported at build time, once: import at the top level.

- ``--wit DIR``: the contract (default: ``$BATON_WIT``, else the ``wit/`` of the repository
  this package sits in or the current directory is in).
- ``--componentize-py PATH``: the tool (default: ``$COMPONENTIZE_PY``, else the package in
  this interpreter, else the one on ``PATH``). Install it with ``pip install componentize-py==0.25.*``.
- ``-p DIR`` (repeatable): more directories to import from (the module's own directory and
  this package's are always on the path).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

#: The world a worker plugin targets.
WORLD = "worker-plugin"
#: The componentize-py release this SDK is tested with.
COMPONENTIZE_PY = "componentize-py==0.25.*"
#: The module name of the entry module written for componentize-py (not the user's: its name
#: must not clash with the world's or the bindings' modules).
ENTRY = "baton_worker_entry"

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BuildError(Exception):
    """Why a build cannot go on, as a sentence that says what to do."""


def find_wit(given: Optional[str] = None) -> Path:
    """The directory of the ``baton:saga`` contract: ``given``, ``$BATON_WIT``, or the ``wit/``
    of an ancestor of this package or of the current directory."""
    if given or os.environ.get("BATON_WIT"):
        wit = Path(given or os.environ["BATON_WIT"])
        if not (wit / "saga.wit").is_file():
            raise BuildError(f"{wit} has no saga.wit: point --wit (or BATON_WIT) at the repository's wit/ directory")
        return wit
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for d in [start, *start.parents]:
            if (d / "wit" / "saga.wit").is_file():
                return d / "wit"
    raise BuildError(
        "cannot find the contract (wit/saga.wit) above "
        + " or ".join(str(s) for s in starts)
        + ": run from a Baton checkout or give --wit DIR (or BATON_WIT)"
    )


def find_componentize_py(given: Optional[str] = None) -> List[str]:
    """How to run componentize-py, as the start of a command line: ``given`` or
    ``$COMPONENTIZE_PY`` (an executable), else this interpreter when it has the package
    installed, else the ``componentize-py`` on ``PATH``."""
    given = given or os.environ.get("COMPONENTIZE_PY")
    if given:
        if shutil.which(given) is None:
            raise BuildError(f"--componentize-py {given}: no such executable")
        return [given]
    if importlib.util.find_spec("componentize_py") is not None:
        # Through this interpreter, not the script beside it: a venv moved after it was made
        # keeps a working interpreter but scripts that name the old path.
        return [sys.executable, "-c", "import sys; from componentize_py import script; sys.exit(script())"]
    found = shutil.which("componentize-py")
    if found:
        return [found]
    raise BuildError(
        "componentize-py is not installed: install it with\n"
        f"    {sys.executable} -m pip install '{COMPONENTIZE_PY}'\n"
        "(in a virtual environment, or with --user), or give --componentize-py PATH"
    )


def build(module: str, output: str, *, wit: Optional[str] = None, tool: Optional[str] = None,
          paths: Sequence[str] = (), quiet: bool = False) -> Path:
    """Build the component of ``module`` (a ``.py`` file) into ``output``; returns its path."""
    src = Path(module)
    if src.suffix != ".py" or not src.is_file():
        raise BuildError(f"{module}: give the Python file that registers the commands, e.g. app.py")
    name = src.stem
    if not _MODULE.match(name) or name.startswith("__") or name in (ENTRY, "wit_world", "baton_worker", "componentize_py_types"):
        raise BuildError(f"{src.name}: the module's name must be a Python identifier, not a dunder name, {ENTRY}, wit_world or baton_worker; rename the file")
    wit_dir = find_wit(wit)
    exe = find_componentize_py(tool)
    out = Path(output)
    if out.parent and not out.parent.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
    sdk = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="baton-worker-build-") as tmp:
        (Path(tmp) / f"{ENTRY}.py").write_text(
            f'"""Entry module of the component of {src.name}, written by baton_worker.build."""\n\n'
            f"import {name}  # noqa: F401 (registers the commands)\n"
            "from baton_worker.component import Worker  # noqa: F401 (the `worker` export)\n"
            "from baton_worker import registry\n\n"
            "if not len(registry):\n"
            f'    raise SystemExit("{src.name} registers no command: decorate its functions with @baton_worker.command(NAME)")\n'
        )
        argv: List[str] = [*exe, "-d", str(wit_dir), "-w", WORLD, "componentize"]
        for p in [tmp, str(src.resolve().parent), str(sdk), *paths]:
            argv += ["-p", p]
        argv += [ENTRY, "-o", str(out)]
        if not quiet:
            print(f"building {out} from {src} ({' '.join(argv)})", file=sys.stderr)
        # componentize-py reports a failed import with a Python traceback, then a Rust
        # backtrace when RUST_BACKTRACE is set: the first is the one that helps.
        env = {**os.environ, "RUST_BACKTRACE": "0"}
        res = subprocess.run(argv, capture_output=quiet, text=True, env=env)
        if res.returncode != 0:
            detail = f":\n{res.stdout}{res.stderr}" if quiet else " (its output is above)"
            raise BuildError(f"componentize-py failed with status {res.returncode}{detail}")
    if not quiet:
        print(f"built {out} ({out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m baton_worker.build``: the command line of :func:`build`."""
    p = argparse.ArgumentParser(
        prog="python -m baton_worker.build",
        description="Build a Baton worker plugin (a WebAssembly component) from a Python module of @baton_worker.command functions.",
    )
    p.add_argument("module", help="the .py file that registers the commands")
    p.add_argument("-o", "--output", required=True, help="the .wasm file to write, e.g. plugins/greeter.wasm")
    p.add_argument("--wit", help="the contract's directory (default: BATON_WIT, else the repository's wit/)")
    p.add_argument("--componentize-py", dest="tool", help="the componentize-py executable (default: COMPONENTIZE_PY, the package in this python, or on PATH)")
    p.add_argument("-p", "--python-path", action="append", default=[], metavar="DIR", help="another directory to import from; repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print componentize-py's output only when it fails")
    args = p.parse_args(argv)
    try:
        build(args.module, args.output, wit=args.wit, tool=args.tool, paths=args.python_path, quiet=args.quiet)
    except BuildError as e:
        print(f"baton_worker.build: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
