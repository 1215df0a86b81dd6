"""The COMPASS module's own dependency installation, run for real (issue 12): `make test` runs this after
the test suite, and CI with it.

1. A fresh virtual environment holding what a 3D Slicer installation holds before COMPASS: the Python
   packages Slicer bundles at Slicer's versions (COMPASS/Resources/constraints.txt, from Slicer's
   SuperBuild), Slicer's MRML (the slicer-core wheel, the stand-in for the application's own Python
   modules), torch (what the PyTorch extension's PyTorchUtils installs) and pyradiomics (what the
   SlicerRadiomics extension builds and ships; built here from its sdist as that extension does).
2. The module's install path, unchanged: COMPASS/COMPASS.py's `COMPASSLogic.ensureDependencies` on
   Slicer's real framework (../shared/slicer: ScriptedLoadableModule, packaging with pip_ensure and
   the constraints file), with pip run for real against the package registry. Only Qt's event-loop
   plumbing around the pip process (a QTimer polling its output) is replaced by a blocking run of the
   same `python -m pip ...` command, since no Qt application exists here.
3. Then every COMPASS entry point imports in that environment, `pip check` is clean, and every package
   Slicer bundles is still at its bundled version.
4. `pip download --only-binary :all: --python-version 3.12` of the module's requirements (with the
   constraints) succeeds: every requirement has wheels for Slicer's Python.

    python Testing/check_slicer_install.py [--venv DIR] [--keep]

Prints one line per step and `check_slicer_install: N passed, M failed` last; exit code 0 when all passed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "COMPASS" / "Resources"
CONSTRAINTS = RESOURCES / "constraints.txt"
REQUIREMENTS = RESOURCES / "requirements.txt"
ENTRY_POINTS = ("COMPASSLib.cli", "COMPASSLib.batch", "COMPASSLib.pipeline", "COMPASSLib.background",
                "COMPASSLib.features.table", "COMPASSLib.features.texture_maps", "COMPASSLib.features.radiomics",
                "COMPASSLib.twin.model", "COMPASSLib.synth", "COMPASSLib.report", "COMPASSLib.mrml")


def pins(path: Path) -> dict:
    """name -> version of the `name==version` lines of a requirements/constraints file."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[_canonical(name)] = version.strip()
    return out


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project_pin(name: str) -> str:
    """The project's own pinned version of a package (requirements.txt at the top), e.g. torch, slicer-core."""
    return pins(REPO / "requirements.txt")[_canonical(name)]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    print("  $ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)


class Steps:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f"\n{detail}" if detail and not ok else ""), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok


def freeze(python: Path) -> dict:
    out = run([python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"])
    return {_canonical(line.split("==")[0]): line.split("==")[1] for line in out.stdout.splitlines() if "==" in line}


def slicer_like_environment(venv: Path, steps: Steps) -> Path | None:
    """A venv as a Slicer installation has it before COMPASS (see the module docstring)."""
    python = venv / "bin" / "python"
    bundled = pins(CONSTRAINTS)
    made = run([sys.executable, "-m", "venv", venv])
    if not steps.check(made.returncode == 0, "virtual environment created", made.stderr):
        return None
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    base = run([*pip, *[f"{n}=={v}" for n, v in bundled.items()]])
    if not steps.check(base.returncode == 0, f"Slicer's bundled packages installed ({len(bundled)})", base.stderr[-3000:]):
        return None
    app = run([*pip, "-c", CONSTRAINTS, f"torch=={_project_pin('torch')}", f"slicer-core=={_project_pin('slicer-core')}"])
    if not steps.check(app.returncode == 0, "torch (PyTorch extension) and Slicer's MRML (slicer-core) installed",
                       app.stderr[-3000:]):
        return None
    # SlicerRadiomics builds pyradiomics from source; its build needs versioneer, which is not kept
    radiomics = run([*pip, "-c", CONSTRAINTS, "versioneer==0.29"])
    radiomics = radiomics if radiomics.returncode else run(
        [*pip, "-c", CONSTRAINTS, "--no-build-isolation", f"pyradiomics=={_project_pin('pyradiomics')}"])
    run([python, "-m", "pip", "uninstall", "-q", "-y", "versioneer"])
    if not steps.check(radiomics.returncode == 0, "pyradiomics (SlicerRadiomics extension) installed",
                       radiomics.stderr[-3000:]):
        return None
    # PythonSlicer, the interpreter slicer.util.executePythonModule starts pip with inside Slicer
    (venv / "bin" / "PythonSlicer").symlink_to(python)
    return python


DRIVER = r'''
import subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])                      # Testing/ (the framework helper)
from helpers_slicer_framework import SlicerFramework

fw = SlicerFramework(Path(sys.argv[2]), testing=False)
slicer = fw.slicer

def execute_python_module(module, args, blocking=True, logCallback=None, completedCallback=None):
    """slicer.util.executePythonModule without Qt's event loop: the same PythonSlicer -m pip command,
    run to its end. Its output is printed here; in Slicer the QTimer polling passes it to the progress
    dialog's log (a Qt widget, a stand-in here, so not fed)."""
    import shutil
    proc = subprocess.run([shutil.which("PythonSlicer"), "-m", module, *args], text=True, capture_output=True)
    print((proc.stdout + proc.stderr)[-3000:])
    if completedCallback is not None:
        completedCallback(proc.returncode)
    elif proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, [module, *args])

slicer.util.executePythonModule = execute_python_module
slicer.util.confirmOkCancelDisplay = lambda *a, **k: True      # the user answers OK to the one question
module = fw.load_module()
logic = module.COMPASSLogic()
asked = []
missing = [m.requirement for m in logic.missingDependencies()]
print("missing before:", missing)
ok = logic.ensureDependencies(askUser=lambda text: asked.append(text) or True)
print("ensureDependencies:", ok, "questions:", len(asked))
print("missing after:", [m.requirement for m in logic.missingDependencies()])
fw.close()
sys.exit(0 if ok and len(asked) == 1 and missing else 3)
'''


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=None, help="where to make the environment (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the environment afterwards")
    args = parser.parse_args(argv)
    steps = Steps()
    work = Path(tempfile.mkdtemp(prefix="compass-slicer-install-"))
    venv = args.venv or work / "venv"
    try:
        python = slicer_like_environment(venv, steps)
        if python is not None:
            before = freeze(python)
            env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                   "PYTHONPATH": str(REPO), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            env.pop("NUMBA_CACHE_DIR", None)
            driver = work / "driver.py"
            driver.write_text(DRIVER, encoding="utf-8")
            installed = run([python, driver, REPO / "Testing", work / "application"], env=env)
            print(installed.stdout[-4000:])
            steps.check(installed.returncode == 0, "the module's install path (real slicer.packaging, real pip) "
                        "installed what was missing after one question", installed.stderr[-4000:])
            imports = run([python, "-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\n"
                           "import radiomics, torch; print('ok')", *ENTRY_POINTS], env=env, cwd=work)
            steps.check(imports.returncode == 0, f"every entry point imports ({', '.join(ENTRY_POINTS)})",
                        imports.stderr[-4000:])
            after = freeze(python)
            changed = {n: (before.get(n), after.get(n)) for n in pins(CONSTRAINTS) if before.get(n) != after.get(n)}
            steps.check(not changed, "Slicer's bundled packages unchanged (" + ", ".join(
                f"{n} {after.get(n)}" for n in sorted(pins(CONSTRAINTS))) + ")", f"changed: {changed}")
            steps.check(after.get("pyradiomics") == before.get("pyradiomics") and after.get("torch") == before.get("torch"),
                        "pyradiomics and torch come from their extensions (pip did not touch them)")
            check = run([python, "-m", "pip", "check"])
            steps.check(check.returncode == 0, "pip check", check.stdout + check.stderr)
        download = run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary", ":all:", "--python-version", "3.12", "-d", work / "wheels",
                        "-r", REQUIREMENTS, "-c", CONSTRAINTS])
        steps.check(download.returncode == 0, "every requirement of the module has wheels for Python 3.12 "
                    f"({len(list((work / 'wheels').glob('*.whl')))} wheels)", download.stderr[-3000:])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if args.venv is not None:
                shutil.rmtree(args.venv, ignore_errors=True)
    print(f"check_slicer_install: {steps.passed} passed, {steps.failed} failed", flush=True)
    return 1 if steps.failed else 0


if __name__ == "__main__":
    sys.exit(main())
