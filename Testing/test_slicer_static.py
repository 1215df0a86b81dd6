"""Static checks of the Slicer side (no application needed): the widget's `self.ui.<name>` exist in
COMPASS.ui with a class that has what the widget uses; every parameter-node field has a bound widget of
a matching class; CMake lists every Python file of COMPASS/ and COMPASSLib/ and every library resource;
the .s4ext and the ExtensionsIndex JSON hold the required keys; the icons are 128x128 PNGs.

Keep the CMake lists in sync after adding files:
    .venv/bin/python Testing/test_slicer_static.py --write-cmake-lists
"""
from __future__ import annotations

import ast
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "COMPASS" / "COMPASS.py"
UI = REPO / "COMPASS" / "Resources" / "UI" / "COMPASS.ui"
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
                 "str": {"QLineEdit", "QComboBox"}, "int": {"QSpinBox", "ctkSliderWidget"},
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


# A stand-in for Slicer's build tree with only what COMPASS's CMake files call, to configure and install
# the extension here (no Slicer build on these machines). The macros copy and install like CTK's.
_STUB_USE_SLICER = """
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.8/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.8/qt-scripted-modules")
set(BUILD_TESTING OFF)
macro(ctkMacroCompilePythonScript)
  cmake_parse_arguments(_py "NO_INSTALL_SUBDIR;GLOBAL_TARGET" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
                        "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT DEFINED _py_SOURCE_DIR)
    set(_py_SOURCE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  foreach(_f ${_py_SCRIPTS} ${_py_RESOURCES})
    if(NOT EXISTS "${_py_SOURCE_DIR}/${_f}")
      message(FATAL_ERROR "missing ${_py_SOURCE_DIR}/${_f}")
    endif()
    configure_file("${_py_SOURCE_DIR}/${_f}" "${_py_DESTINATION_DIR}/${_f}" COPYONLY)
  endforeach()
  install(DIRECTORY "${_py_DESTINATION_DIR}/" DESTINATION "${_py_INSTALL_DIR}")
endmacro()
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(_m "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  ctkMacroCompilePythonScript(TARGET_NAME ${_m_NAME} SCRIPTS "${_m_SCRIPTS}" RESOURCES "${_m_RESOURCES}"
    DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
    INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR} NO_INSTALL_SUBDIR)
endmacro()
macro(slicer_add_python_unittest)
endmacro()
"""


def test_cmake_install_tree_imports_library_and_module(tmp_path):
    """Configure and install the extension against the stand-in Slicer tree, then, in a fresh
    interpreter without the editable install (-S), load the installed COMPASS.py: COMPASSLib must come
    from the install tree, with its Resources."""
    import shutil
    import subprocess
    import sysconfig

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not installed")
    stub = tmp_path / "slicer"
    stub.mkdir()
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    (stub / "SlicerConfig.cmake").write_text(
        'set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")\n'
        'set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n'
        'set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n')
    build, prefix = tmp_path / "build", tmp_path / "install"
    build.mkdir()
    for cmd in ([cmake, f"-DSlicer_DIR={stub}", f"-DCMAKE_INSTALL_PREFIX={prefix}", str(REPO)],
                [cmake, "--install", "."]):
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lib = prefix / "lib" / "Slicer-5.8" / "qt-scripted-modules"
    for f in ("COMPASS.py", "Resources/UI/COMPASS.ui", "Resources/Icons/COMPASS.png", "Resources/requirements.txt",
              "COMPASSLib/mrml/__init__.py", "COMPASSLib/mrml/texture.py", "COMPASSLib/batch.py",
              "COMPASSLib/Resources/organs.yaml"):
        assert (lib / f).is_file(), f
    assert sorted(p.name for p in lib.glob("*.py")) == ["COMPASS.py"]
    code = ("import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('COMPASS', {str(lib / 'COMPASS.py')!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "import COMPASSLib.resources as r\n"
            "print(m.mrml.__file__); print(r.resources_dir())\n")
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=lib, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{lib}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mrml_file, resources = proc.stdout.strip().splitlines()[-2:]
    assert Path(mrml_file) == lib / "COMPASSLib" / "mrml" / "__init__.py"
    assert Path(resources) == lib / "COMPASSLib" / "Resources"


# --- catalogue files --------------------------------------------------------------------------
S4EXT_KEYS = ("scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors",
              "category", "iconurl", "status", "description", "screenshoturls", "enabled")
# Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json: required keys and the only
# allowed ones (additionalProperties false).
JSON_REQUIRED = ("$schema", "category", "scm_url")
JSON_ALLOWED = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                "dicom_support_rule", "build_subdirectory", "enabled", "tier"}


def test_s4ext_has_every_field():
    fields = {}
    for line in (REPO / "COMPASS.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    for key in S4EXT_KEYS:
        assert fields.get(key), f"COMPASS.s4ext lacks {key}"
    assert fields["scm"] == "git" and fields["category"] == "Radiotherapy" and fields["enabled"] in ("0", "1")
    assert "PyTorch" in fields["depends"].split()


def test_extensions_index_json():
    doc = json.loads((REPO / "COMPASS.json").read_text(encoding="utf-8"))
    for key in JSON_REQUIRED:
        assert doc.get(key), key
    assert set(doc) <= JSON_ALLOWED, set(doc) - JSON_ALLOWED
    assert doc["category"] == "Radiotherapy" and "PyTorch" in doc["build_dependencies"]
    assert "slicer-extension-catalog-entry-schema" in doc["$schema"]
    assert isinstance(doc.get("enabled", True), bool) and 1 <= doc.get("tier", 1) <= 5


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


def test_requirements_file_is_parseable():
    from packaging.requirements import Requirement

    lines = [ln.split("#")[0].strip() for ln in
             (REPO / "COMPASS" / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    names = {Requirement(ln).name.lower() for ln in lines if ln}
    assert {"torch", "pyradiomics", "scikit-learn", "pandas", "safetensors"} <= names


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-cmake-lists"]:
        write_cmake_lists()
        print(f"updated {MODULE_CMAKE}")
    else:
        sys.exit(pytest.main([__file__, "-q"]))
