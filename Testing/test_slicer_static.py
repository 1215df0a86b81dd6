"""Checks of the Slicer side without an application: the widget's `self.ui.<name>` exist in COMPASS.ui
with a class that has what the widget uses; every parameter-node field has a bound widget of a matching
class; CMake lists every Python file of COMPASS/ and COMPASSLib/ and every library resource; the
extension configures, builds and installs through Slicer's real CMake macros (../shared/slicer/CMake)
and the installed module loads; every package the library imports is provided to the module (pip
requirement, extension dependency, bundled with Slicer, or optional); the extension dependencies are
declared in CMakeLists.txt, the .s4ext and COMPASS.json; COMPASS.json passes the Extensions Index
checker's offline checks; the icons are 128x128 PNGs.

Keep the CMake lists in sync after adding files:
    .venv/bin/python Testing/test_slicer_static.py --write-cmake-lists
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The module folder; COMPASS_MODULE_DIR points the checks at another copy (e.g. an older COMPASS.py).
MODULE_DIR = Path(os.environ.get("COMPASS_MODULE_DIR", REPO / "COMPASS"))
MODULE = MODULE_DIR / "COMPASS.py"
UI = MODULE_DIR / "Resources" / "UI" / "COMPASS.ui"
MODULE_CMAKE = REPO / "COMPASS" / "CMakeLists.txt"
BEGIN, END = "# BEGIN COMPASSLib files (generated)", "# END COMPASSLib files (generated)"
# Folders of Resources/ that are the extension's catalogue assets, not tables the library reads.
CATALOGUE_ASSETS = ("Icons", "Screenshots")

# What the widget may call on a widget of each kind (Qt/CTK API), to catch a renamed or retyped widget.
BUTTONS = {"QPushButton", "QToolButton", "ctkPushButton", "ctkCheckablePushButton"}
ALLOWED = {
    "connect": None,                                  # every QObject
    "enabled": None, "setVisible": None, "visible": None, "toolTip": None, "setEnabled": None,
    "text": {"QLabel", "QLineEdit", *BUTTONS},
    "value": {"QProgressBar", "QSpinBox", "QDoubleSpinBox", "ctkSliderWidget"},
    "currentText": {"QComboBox", "ctkComboBox"},
    "clear": {"QComboBox", "ctkComboBox", "QLineEdit"},
    "addItems": {"QComboBox", "ctkComboBox"},
    "currentPath": {"ctkPathLineEdit"},
    "checked": {"QCheckBox", *BUTTONS},
}
SIGNALS = {"clicked(bool)": BUTTONS, "toggled(bool)": {"QCheckBox", *BUTTONS},
           "currentIndexChanged(int)": {"QComboBox", "ctkComboBox"}}
# Parameter-node field types -> widget classes parameterNodeWrapper's connectGui binds them to.
FIELD_WIDGETS = {"Path": {"ctkPathLineEdit"}, "bool": {"QCheckBox", "ctkCheckBox"},
                 "str": {"QLineEdit"}, "int": {"QSpinBox", "ctkSliderWidget"},   # a QComboBox needs a Choice annotation
                 "float": {"QDoubleSpinBox", "ctkSliderWidget", "ctkDoubleSpinBox"}}


def ui_widgets() -> dict:
    """name -> (class, SlicerParameterName or None) of every widget in the .ui file."""
    out = {}
    for w in ET.parse(UI).getroot().iter("widget"):
        param = None
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                param = prop.findtext("string")
        out[w.get("name")] = (w.get("class"), param)
    return out


def module_tree() -> ast.Module:
    return ast.parse(MODULE.read_text(encoding="utf-8"))


def widget_ui_uses() -> dict:
    """name -> set of attributes (and 'signal:<sig>') the widget code uses on self.ui.<name>."""
    uses: dict = {}
    for node in ast.walk(module_tree()):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "ui" and isinstance(node.value.value, ast.Name)
                and node.value.value.id == "self"):
            uses.setdefault(node.attr, set())
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Attribute) and node.value.value.attr == "ui"):
            uses.setdefault(node.value.attr, set()).add(node.attr)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect"
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute)
                and node.func.value.value.attr == "ui" and node.args and isinstance(node.args[0], ast.Constant)):
            uses.setdefault(node.func.value.attr, set()).add(f"signal:{node.args[0].value}")
    return uses


def parameter_fields() -> dict:
    """field -> base type name of the @parameterNodeWrapper class in COMPASS.py."""
    for node in module_tree().body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", None) == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            fields = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    ann = item.annotation
                    if isinstance(ann, ast.Subscript) and getattr(ann.value, "id", None) == "Annotated":
                        ann = ann.slice.elts[0]
                    fields[item.target.id] = ast.unparse(ann)
            return fields
    raise AssertionError("no @parameterNodeWrapper class in COMPASS.py")


def test_widget_ui_names_exist_with_the_right_class():
    widgets = ui_widgets()
    uses = widget_ui_uses()
    assert len(uses) >= 10, "the widget should use its UI"
    for name, attrs in sorted(uses.items()):
        assert name in widgets, f"self.ui.{name} is used in COMPASS.py but missing from COMPASS.ui"
        cls = widgets[name][0]
        for attr in attrs:
            if attr.startswith("signal:"):
                allowed = SIGNALS.get(attr[7:])
                assert allowed is not None, f"add the signal {attr[7:]} to the test's SIGNALS table"
            else:
                assert attr in ALLOWED, f"self.ui.{name}.{attr}: add the attribute to the test's ALLOWED table"
                allowed = ALLOWED[attr]
            assert allowed is None or cls in allowed, f"self.ui.{name}.{attr} needs one of {sorted(allowed)}, .ui has {cls}"


def test_every_parameter_field_has_a_widget():
    fields = parameter_fields()
    assert {"cohortPath", "modelPath", "outputPath", "useGPU"} <= set(fields)
    bound = {param: (name, cls) for name, (cls, param) in ui_widgets().items() if param}
    for field, type_name in fields.items():
        assert field in bound, f"parameter {field!r} has no widget with SlicerParameterName={field} in COMPASS.ui"
        name, cls = bound[field]
        assert cls in FIELD_WIDGETS[type_name], f"{field}: {type_name} cannot bind to {name} ({cls})"
    stray = set(bound) - set(fields)
    assert not stray, f"widgets bound to parameters the node lacks: {sorted(stray)}"


def test_only_one_python_file_beside_the_module():
    """Slicer loads every .py directly in COMPASS/ as a module."""
    assert sorted(p.name for p in (REPO / "COMPASS").glob("*.py")) == ["COMPASS.py"]


# --- CMake lists ------------------------------------------------------------------------------
def library_scripts() -> list:
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / "COMPASSLib").rglob("*.py")
                  if "__pycache__" not in p.parts)


def library_resources() -> list:
    out = []
    for p in (REPO / "Resources").rglob("*"):
        rel = p.relative_to(REPO / "Resources")
        if p.is_file() and rel.parts[0] not in CATALOGUE_ASSETS and "__pycache__" not in rel.parts:
            out.append(p.relative_to(REPO).as_posix())
    return sorted(out)


def cmake_list(text: str, variable: str) -> list:
    m = re.search(r"set\(\s*" + re.escape(variable) + r"\s+(.*?)\)", text, re.S)
    assert m, f"set({variable} ...) not found"
    return [t for t in m.group(1).split() if not t.startswith("#")]


def generated_block() -> str:
    lines = [BEGIN, "set(COMPASSLib_PYTHON_SCRIPTS"]
    lines += [f"  {f}" for f in library_scripts()]
    lines += ["  )", "", "set(COMPASSLib_RESOURCES"]
    lines += [f"  {f}" for f in library_resources()]
    lines += ["  )", END]
    return "\n".join(lines)


def write_cmake_lists() -> None:
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    MODULE_CMAKE.write_text(text[:start] + generated_block() + text[end:], encoding="utf-8")


def test_cmake_lists_every_python_file_and_resource():
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    hint = "run: .venv/bin/python Testing/test_slicer_static.py --write-cmake-lists"
    listed = cmake_list(text, "COMPASSLib_PYTHON_SCRIPTS")
    missing = sorted(set(library_scripts()) - set(listed))
    gone = sorted(set(listed) - set(library_scripts()))
    assert not missing, f"COMPASS/CMakeLists.txt does not list {missing}; {hint}"
    assert not gone, f"COMPASS/CMakeLists.txt lists files that do not exist: {gone}; {hint}"
    resources = cmake_list(text, "COMPASSLib_RESOURCES")
    assert sorted(resources) == library_resources(), f"COMPASSLib_RESOURCES out of date; {hint}"
    assert "Resources/organs.yaml" in resources
    module_scripts = [s.replace("${MODULE_NAME}", "COMPASS") for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    assert module_scripts == ["COMPASS.py"]
    for res in cmake_list(text, "MODULE_PYTHON_RESOURCES"):
        assert (REPO / "COMPASS" / res.replace("${MODULE_NAME}", "COMPASS")).is_file(), res
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for needed in ("project(COMPASS)", 'EXTENSION_CATEGORY "Radiotherapy"', "find_package(Slicer REQUIRED)",
                   "include(${Slicer_USE_FILE})", "add_subdirectory(COMPASS)",
                   "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert needed in top, needed
    for var in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{var} "[^"]+"\)', top), var


def test_installed_layout_finds_the_resources(tmp_path, monkeypatch):
    """Copy the library as CMake installs it (COMPASSLib/*.py + COMPASSLib/Resources/...) and import it
    in a fresh interpreter: COMPASSLib.resources must find the tables there."""
    import shutil
    import subprocess

    text = MODULE_CMAKE.read_text(encoding="utf-8")
    lib = tmp_path / "qt-scripted-modules"
    for f in cmake_list(text, "COMPASSLib_PYTHON_SCRIPTS"):
        (lib / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, lib / f)
    for r in cmake_list(text, "COMPASSLib_RESOURCES"):
        (lib / "COMPASSLib" / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / r, lib / "COMPASSLib" / r)
    code = ("import COMPASSLib.resources as r; p = r.resources_dir(); print(p); "
            "assert r.canonical_organ('Spinal Cord') == 'SpinalCord'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=lib, capture_output=True, text=True,
                          env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == lib / "COMPASSLib" / "Resources"


# A stand-in for what `find_package(Slicer)` and UseSlicer.cmake give an extension: variables, CTK's two
# helpers that ../shared lacks (ctkMacroParseArguments, the byte-compile script template), and
# Slicer's test launcher. The macros COMPASS's CMake files call are Slicer's and CTK's real files from
# ../shared/slicer/CMake: slicerMacroBuildScriptedModule, ctkMacroCompilePythonScript (copies at
# build time, byte-compiles, installs) and slicer_add_python_unittest (a ctest through CMake's own
# ExternalData_add_test).
SHARED_CMAKE = Path(__file__).resolve().parents[2] / "shared" / "slicer" / "CMake"
SCRIPTED_LIB_DIR = "lib/Slicer-5.11/qt-scripted-modules"
_SLICER_CONFIG = """
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")
"""
_USE_SLICER = """
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "@SCRIPTED@")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_CLIMODULES_LIB_DIR "lib/Slicer-5.11/cli-modules")
set(Slicer_QTLOADABLEMODULES_LIB_DIR "lib/Slicer-5.11/qt-loadable-modules")
set(Slicer_USE_PYTHONQT ON)
set(CTK_CMAKE_DIR "${CMAKE_CURRENT_LIST_DIR}/CTK")
set(PYTHONINTERP_FOUND TRUE)
set(PYTHON_EXECUTABLE "@PYTHON@")
set(PYTHONLIBS_FOUND TRUE)
set(PYTHON_LIBRARIES "libpython-stand-in.so")
function(ctkFunctionExtractOptimizedLibrary libraries_var library_var)
  set(${library_var} "${${libraries_var}}" PARENT_SCOPE)
endfunction()
macro(SlicerMacroConfigureGenericPythonModuleTests modules output_var)
  set(${output_var})
endmacro()
include(ExternalData)
set(Slicer_ExternalData_DATA_MANAGEMENT_TARGET SlicerData)
set(Slicer_LAUNCHER_EXECUTABLE "/stand-in/Slicer")
set(BUILD_TESTING ON)
enable_testing()
include("@SHARED@/ctkMacroCompilePythonScript.cmake")
include("@SHARED@/SlicerMacroPythonTesting.cmake")
include("@SHARED@/SlicerMacroBuildScriptedModule.cmake")
"""
_CTK_PARSE_ARGUMENTS = """
macro(ctkMacroParseArguments prefix arg_names option_names)
  cmake_parse_arguments(${prefix} "${option_names}" "" "${arg_names}" ${ARGN})
endmacro()
"""
_CTK_COMPILE_TEMPLATE = """
file(WRITE "@compile_all_script@" "import py_compile
from pathlib import Path
def ctk_compile_file(fullname, force=0):
    py_compile.compile(fullname, doraise=True)
    return True
@_compileall_code@
")
execute_process(COMMAND "@PYTHON_EXECUTABLE@" "@compile_all_script@" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "byte-compiling the Python scripts of @target@ failed")
endif()
file(WRITE "@CMAKE_CURRENT_BINARY_DIR@/python_compile_@target@_complete" "")
"""


def _stand_in_slicer(folder: Path) -> Path:
    (folder / "CTK").mkdir(parents=True)
    (folder / "SlicerConfig.cmake").write_text(_SLICER_CONFIG)
    (folder / "Empty.cmake").write_text("")
    (folder / "UseSlicer.cmake").write_text(_USE_SLICER.replace("@SCRIPTED@", SCRIPTED_LIB_DIR)
                                            .replace("@PYTHON@", sys.executable).replace("@SHARED@", SHARED_CMAKE.as_posix()))
    (folder / "CTK" / "ctkMacroParseArguments.cmake").write_text(_CTK_PARSE_ARGUMENTS)
    (folder / "CTK" / "ctk_compile_python_scripts.cmake.in").write_text(_CTK_COMPILE_TEMPLATE)
    return folder


def test_cmake_configure_build_install_with_slicers_macros(tmp_path):
    """Configure, build and install the extension through Slicer's real macros; the installed tree holds
    COMPASS.py, its Resources, COMPASSLib with every listed file (byte-compiled) and its tables; ctest
    has COMPASSTest as Slicer's python unittest; and, in a fresh interpreter without the editable
    install (-S), the installed COMPASS.py loads on Slicer's framework with COMPASSLib from the install tree."""
    import shutil
    import subprocess
    import sysconfig

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    assert (SHARED_CMAKE / "SlicerMacroBuildScriptedModule.cmake").is_file(), SHARED_CMAKE
    stub = _stand_in_slicer(tmp_path / "slicer")
    build, prefix = tmp_path / "build", tmp_path / "install"
    build.mkdir()
    for cmd in ([cmake, f"-DSlicer_DIR={stub}", f"-DCMAKE_INSTALL_PREFIX={prefix}", str(REPO)],
                [cmake, "--build", ".", "--", "-j2"], [cmake, "--install", "."]):
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
    lib = prefix / SCRIPTED_LIB_DIR
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    for f in ("COMPASS.py", *(r.replace("${MODULE_NAME}", "COMPASS") for r in cmake_list(text, "MODULE_PYTHON_RESOURCES"))):
        assert (lib / f).is_file(), f
    for f in ("Resources/constraints.txt", "Resources/requirements.txt"):
        assert (lib / f).read_bytes() == (REPO / "COMPASS" / f).read_bytes(), f
    for f in cmake_list(text, "COMPASSLib_PYTHON_SCRIPTS"):
        assert (lib / f).read_bytes() == (REPO / f).read_bytes(), f
        cached = (lib / f).parent / "__pycache__"
        assert any(p.name.startswith(Path(f).stem + ".") for p in cached.glob("*.pyc")), f"{f} not byte-compiled"
    for r in cmake_list(text, "COMPASSLib_RESOURCES"):
        assert (lib / "COMPASSLib" / r).is_file(), r
    assert sorted(p.name for p in lib.glob("*.py")) == ["COMPASS.py"]
    tests = (build / "COMPASS" / "CTestTestfile.cmake").read_text(encoding="utf-8")
    assert "py_COMPASS" in tests and "slicer.testing.runUnitTest" in tests and "'COMPASS')" in tests, tests[-1500:]

    testing = Path(__file__).resolve().parent
    code = ("import sys\n"
            f"sys.path.insert(0, {str(testing)!r})\n"
            "from pathlib import Path\n"
            "import helpers_slicer_framework as h\n"
            f"fw = h.SlicerFramework(Path({str(tmp_path / 'app')!r}))\n"
            f"m = fw.load_module(Path({str(lib / 'COMPASS.py')!r}))\n"
            "import COMPASSLib.resources as r\n"
            "print(m.mrml.__file__); print(r.resources_dir()); print(m.CONSTRAINTS)\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=lib, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{lib}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mrml_file, resources, constraints = proc.stdout.strip().splitlines()[-3:]
    assert Path(mrml_file) == lib / "COMPASSLib" / "mrml" / "__init__.py"
    assert Path(resources) == lib / "COMPASSLib" / "Resources"
    assert Path(constraints) == lib / "Resources" / "constraints.txt"


# --- catalogue files --------------------------------------------------------------------------
S4EXT_KEYS = ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
              "category", "iconurl", "status", "description", "screenshoturls", "enabled")
EXTENSIONS_INDEX = Path(__file__).resolve().parents[2] / "shared" / "slicer" / "ExtensionsIndex"


def s4ext_fields() -> dict:
    fields = {}
    for line in (REPO / "COMPASS.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    return fields


def extension_requirements() -> dict:
    """COMPASS.py's EXTENSION_REQUIREMENTS (requirement -> the Slicer extension providing it)."""
    for node in module_tree().body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXTENSION_REQUIREMENTS" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def test_s4ext_has_every_field():
    fields = s4ext_fields()
    for key in S4EXT_KEYS:
        assert fields.get(key), f"COMPASS.s4ext lacks {key}"
    assert fields["scm"] == "git" and fields["category"] == "Radiotherapy" and fields["enabled"] in ("0", "1")


def test_extension_dependencies_are_declared_everywhere():
    """The extensions whose packages the module uses (torch: PyTorch, pyradiomics: SlicerRadiomics) are
    the extension's dependencies in CMakeLists.txt, the .s4ext and the catalogue entry, and exist in the
    Extensions Index."""
    wanted = set(extension_requirements().values())
    assert wanted == {"PyTorch", "SlicerRadiomics"}
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert set(re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', top).group(1).split()) == wanted
    assert set(s4ext_fields()["depends"].split()) == wanted
    assert set(json.loads((REPO / "COMPASS.json").read_text(encoding="utf-8"))["build_dependencies"]) == wanted
    assert all((EXTENSIONS_INDEX / f"{name}.json").is_file() for name in wanted)


def _index_checker():
    """The Extensions Index's check_description_files.py as a module. It is written for Python 3.12: a
    line this interpreter cannot parse is blanked, which is allowed only inside print_categories (the
    --print-categories listing, not a check)."""
    import types

    path = EXTENSIONS_INDEX / "scripts" / "check_description_files.py"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for _ in range(5):
        try:
            code = compile("".join(lines), str(path), "exec")
            break
        except SyntaxError as e:
            owner = next(ln for ln in reversed(lines[:e.lineno]) if ln.startswith("def "))
            assert owner.startswith("def print_categories("), f"{path}:{e.lineno}: {e.msg}"
            bad = lines[e.lineno - 1]
            lines[e.lineno - 1] = bad[:len(bad) - len(bad.lstrip())] + "pass\n"
    checker = types.ModuleType("check_description_files")
    checker.__file__ = str(path)
    exec(code, checker.__dict__)
    return checker


class _OfflineRequests:
    """Stands in for `requests` in the index checker (no network here): the schema URL answers with
    ../shared's copy of the schema; an image URL answers as a server would by its file name."""

    class RequestException(Exception):
        pass

    def get(self, url, timeout=None, headers=None):
        import types

        if url.endswith("slicer-extension-catalog-entry-schema-v1.0.2.json"):
            data = json.loads((EXTENSIONS_INDEX / "schemas" / url.rsplit("/", 1)[1]).read_text(encoding="utf-8"))
            return types.SimpleNamespace(json=lambda: data, raise_for_status=lambda: None, headers={})
        kind = "image/png" if url.lower().endswith(".png") else "text/html"
        return types.SimpleNamespace(raise_for_status=lambda: None, headers={"Content-Type": kind})


def _validate(instance, schema):
    """The draft-07 keywords Slicer's catalogue-entry schema uses (where jsonschema is not installed)."""
    errors = [f"missing {k}" for k in schema.get("required", []) if k not in instance]
    props = schema.get("properties", {})
    if schema.get("additionalProperties") is False:
        errors += [f"not allowed: {k}" for k in instance if k not in props]
    types_ = {"string": str, "boolean": bool, "integer": int, "array": list, "object": dict}
    for key, value in instance.items():
        rule = props.get(key, {})
        if "type" in rule and not (isinstance(value, types_[rule["type"]])
                                   and not (rule["type"] == "integer" and isinstance(value, bool))):
            errors.append(f"{key}: not {rule['type']}")
        if "enum" in rule and value not in rule["enum"]:
            errors.append(f"{key}: not one of {rule['enum']}")
        if "minimum" in rule and value < rule["minimum"] or "maximum" in rule and value > rule["maximum"]:
            errors.append(f"{key}: out of range")
        if rule.get("type") == "array" and "items" in rule:
            errors += [f"{key}: item {v!r}" for v in value if not isinstance(v, types_[rule["items"]["type"]])]
    return errors


def test_catalogue_entry_passes_the_extensions_index_checks(tmp_path, monkeypatch):
    """COMPASS.json through the Extensions Index's own checker (check_description_files.py), every check
    that works offline: file format, extension and repository names, category, SCM URL, license file,
    repository size, the top-level CMakeLists.txt content (image URLs answered offline), the schema
    (jsonschema where installed, else the schema's keywords checked here) and the dependencies against
    the index's real entries of PyTorch and SlicerRadiomics."""
    import shutil
    import subprocess

    checker = _index_checker()
    metadata = checker.parse_json(str(REPO / "COMPASS.json"))
    name = "COMPASS"
    checker.check_json_file_format(name, metadata, str(REPO / "COMPASS.json"))
    checker.check_extension_name(name, metadata)
    checker.check_category(name, metadata)
    checker.check_git_repository_name(name, metadata)
    checker.check_scm_url_syntax(name, metadata)
    checker.check_license_file(name, metadata, str(REPO))
    # the repository as a clone would hold it: the files git tracks or would add (not .venv, builds)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    clone = tmp_path / "clone"
    for f in listed:
        if (REPO / f).is_file():
            (clone / f).parent.mkdir(parents=True, exist_ok=True)
            (clone / f).symlink_to(REPO / f)
    checker.check_repository_size(name, metadata, str(clone))
    monkeypatch.setattr(checker, "requests", _OfflineRequests())
    checker.check_cmakelists_content(name, metadata, str(REPO))
    schema_file = EXTENSIONS_INDEX / "schemas" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
    assert metadata["$schema"].split("#")[0].endswith(schema_file.name)
    if checker.jsonschema is not None:
        checker.check_json_schema(name, metadata)
    else:
        assert _validate(metadata, json.loads(schema_file.read_text(encoding="utf-8"))) == []
    index = tmp_path / "index"
    index.mkdir()
    shutil.copy(REPO / "COMPASS.json", index / "COMPASS.json")
    for dependency in metadata["build_dependencies"]:        # the index's real entries of what COMPASS needs
        if (EXTENSIONS_INDEX / f"{dependency}.json").is_file():
            shutil.copy(EXTENSIONS_INDEX / f"{dependency}.json", index)
    checker.check_dependencies(str(index))


def test_license_icons_and_screenshot():
    lic = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert "BSD 3-Clause" in lic and "Copyright (c) 2026 The COMPASS authors" in lic
    import matplotlib.image

    for icon in (REPO / "Resources" / "Icons" / "COMPASS.png", REPO / "COMPASS" / "Resources" / "Icons" / "COMPASS.png"):
        assert matplotlib.image.imread(icon).shape[:2] == (128, 128), icon
    shots = list((REPO / "Resources" / "Screenshots").glob("*.png"))
    assert shots, "no screenshot in Resources/Screenshots"
    top = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    for shot in shots:
        assert shot.name in top and shot.name in (REPO / "COMPASS.s4ext").read_text(encoding="utf-8")


# --- the module's Python packages -------------------------------------------------------------
# Third-party imports of the library that the module need not provide, and why.
OPTIONAL_IMPORTS = {
    "dask": "executors.py: only with a Dask scheduler (the command line's --scheduler)",
    "distributed": "executors.py: only with a Dask scheduler",
    "threadpoolctl": "executors.one_thread (one BLAS thread per fit): a dependency of scikit-learn, installed with it",
    "tqdm": "progress.console: the command line's progress bar",
    "psutil": "memory.available_bytes: the available memory where /proc/meminfo is absent (no default limit without)",
    "trame": "webview.py: the `compass view` web app only; the Slicer module shows the scene in its own views",
}
SLICER_ITSELF = {"slicer", "vtk", "qt", "ctk"}
# The command line (`compass`) is not part of the extension's use of the library.
COMMAND_LINE = ("COMPASSLib/cli.py", "COMPASSLib/__main__.py", "COMPASSLib/commands/")


def requirement_lines(path: Path) -> list:
    """The requirements of a requirements/constraints file, read as slicer.packaging.load_requirements does."""
    from packaging.requirements import Requirement

    return [Requirement(ln.strip()) for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.strip().startswith(("#", "-"))]


def library_imports() -> dict:
    """Top-level third-party names the library imports anywhere (inside functions too) -> files."""
    found: dict = {}
    for path in (REPO / "COMPASSLib").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if "__pycache__" in rel or rel.startswith(COMMAND_LINE):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "COMPASSLib":
                    found.setdefault(top, set()).add(rel)
    return found


def test_every_package_the_library_imports_is_provided():
    """Each third-party package the library imports (all but the command line's files) is a pip
    requirement of the module, comes from a Slicer extension the extension depends on, is bundled with
    Slicer (the constraints file), or is optional for a stated reason."""
    import importlib.metadata

    from packaging.utils import canonicalize_name

    resources = MODULE_DIR / "Resources"
    pip = {canonicalize_name(r.name) for r in requirement_lines(resources / "requirements.txt")}
    extensions = {canonicalize_name(r.split(">")[0].split("=")[0].split("<")[0]) for r in extension_requirements()}
    constraints = resources / "constraints.txt"
    bundled = {canonicalize_name(r.name) for r in requirement_lines(constraints)} if constraints.is_file() else set()
    assert not pip & extensions, f"pip must not install what extensions provide: {pip & extensions}"
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for name, files in library_imports().items():
        if name in SLICER_ITSELF or name in OPTIONAL_IMPORTS:
            continue
        dists = {canonicalize_name(d) for d in distributions.get(name, [])}
        assert dists, f"{name} (imported by {sorted(files)}) is not installed here"
        if not dists & (pip | extensions | bundled):
            undeclared[name] = sorted(files)
    assert not undeclared, f"imported but not provided to the Slicer module: {undeclared}"


def test_constraints_pin_versions():
    pins = requirement_lines(MODULE_DIR / "Resources" / "constraints.txt")
    assert pins and all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in pins), pins
    assert {r.name.lower() for r in pins} >= {"numpy", "scipy", "simpleitk", "pydicom", "pillow", "packaging", "requests"}


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cmake-lists"]:
        write_cmake_lists()
        print(f"updated {MODULE_CMAKE}")
    else:
        sys.exit(pytest.main([__file__, "-q"]))
