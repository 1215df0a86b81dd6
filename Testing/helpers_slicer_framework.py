"""3D Slicer's real pure-Python framework over the slicer-core wheel, for the tests of COMPASS/COMPASS.py.

`../shared/slicer` (beside the checkout; see its README.md) holds Slicer's own ScriptedLoadableModule,
parameterNodeWrapper, packaging and i18n, and the Sample Data module. The slicer-core wheel has MRML but
not these, and not Qt. `SlicerFramework` loads them the way the README says: `import slicer` from the
wheel first, then minimal stand-ins for what these files touch that needs Qt (the `qt` and `ctk`
modules, the qMRML/qSlicer widget classes on `slicer`, `slicer.app`), then `../shared/slicer/python/slicer`
appended to `slicer.__path__`. Everything else that runs is Slicer's code: the framework files, the
wheel's `slicer.util`, MRML and the module logics.

The stand-ins:
- `qt` / `ctk`: any class name gives a stand-in class (`_QObject`), the same class on every access, so
  the parameterNodeWrapper's GUI connectors (`type(widget) == ctk.ctkPathLineEdit`) accept widgets made
  from them. Objects keep what is set on them, have properties (`property`/`setProperty`), children,
  signals (`widget.clicked.connect(slot)`, PythonQt's `widget.connect("clicked(bool)", slot)`,
  `widget.click()`), layouts; any other method does nothing and returns None. Enum values of a class
  (`qt.QMessageBox.Ok`) are ints, callable for static functions (`qt.QThread.currentThread()`).
  `qt.QUiLoader` builds a widget tree from a .ui file (classes, object names, properties).
- `slicer.app`: `testingEnabled()`, `temporaryPath`, `cachePath`, `translate`, `connect` (records
  slots; `emit_startup_completed()` runs the "startupCompleted()" ones), `applicationLogic()` and,
  under `slicer.modules`, the module logics the application would have loaded (Segmentations,
  Sequences, Colors, Plots): slicer-core's real logic classes on the application's scene
  (`slicer.mrmlScene`), as the application sets them up.

`SlicerFramework` restores everything it changed (sys.modules, `slicer` attributes, `slicer.__path__`,
sys.path, os.environ's NUMBA_CACHE_DIR) on `close()`, so later tests see the plain slicer-core wheel.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import types
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_SLICER = SHARED / "slicer"
FRAMEWORK = SHARED_SLICER / "python" / "slicer"
SAMPLE_DATA = SHARED_SLICER / "SampleData"
# The module under test; COMPASS_MODULE_DIR points the tests at another copy (e.g. an older COMPASS.py).
MODULE_DIR = Path(os.environ.get("COMPASS_MODULE_DIR", REPO / "COMPASS"))
MODULE_FILE = MODULE_DIR / "COMPASS.py"

# The qMRML/qSlicer widget classes the framework files name (guiConnectors, ScriptedLoadableModule).
SLICER_WIDGET_NAMES = ("qMRMLWidget", "qSlicerWidget", "qMRMLNodeComboBox", "qMRMLSliderWidget", "qMRMLSpinBox",
                       "qMRMLRangeWidget", "qMRMLScreenShotDialog", "qMRMLUtils")


# --- Qt / CTK stand-ins -----------------------------------------------------------------------
class _Flag(int):
    """An enum value of a stand-in class (qt.QMessageBox.Ok); callable for static functions."""

    def __call__(self, *args, **kwargs):
        return None


class _QtMeta(type):
    def __getattr__(cls, name):
        if name.startswith("_"):
            raise AttributeError(name)
        value = _Flag(zlib.crc32(f"{cls.__name__}.{name}".encode()) & 0x7FFFFFFF)
        setattr(cls, name, value)
        return value


def _arity(slot) -> int | None:
    """How many positional arguments `slot` takes (None: any number)."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty for p in params)


class _Signal:
    def __init__(self):
        self.slots = []   # (slot, number of arguments of the connected signature, None: all)

    def connect(self, slot, nargs=None):
        self.slots.append((slot, nargs))

    def disconnect(self, slot=None):
        self.slots = [(s, n) for s, n in self.slots if slot is not None and s != slot]

    def emit(self, *args):
        for slot, nargs in list(self.slots):
            given = args if nargs is None else args[:nargs]
            wanted = _arity(slot)
            slot(*(given if wanted is None else given[:wanted]))


_SIGNALS = {"clicked", "toggled", "triggered", "timeout", "pressed", "released", "activated", "accepted",
            "rejected", "finished", "contentsCollapsed"}


class _QObject(metaclass=_QtMeta):
    """Stand-in for any Qt/CTK/qMRML class."""

    def __init__(self, *args, **kwargs):
        d = self.__dict__
        d["_props"], d["_children"], d["_signals"], d["_items"] = {}, [], {}, []
        d["_parent"] = None
        for a in args:
            if isinstance(a, _QObject):
                self.setParent(a)
                break
        d.update(name="", objectName="", text=next((a for a in args if isinstance(a, str)), ""), checked=False,
                 value=0, minimum=0, maximum=99, currentPath="", currentText="", currentIndex=-1, enabled=True,
                 visible=True, toolTip="", collapsed=False, title="")
        d.update(kwargs)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._signals or name in _SIGNALS or name.endswith("Changed"):
            return self._signal(name)

        def method(*args, **kwargs):
            return None
        method.__name__ = name
        return method

    def __bool__(self):
        return True

    # signals and properties
    def _signal(self, name) -> "_Signal":
        return self._signals.setdefault(name, _Signal())

    def connect(self, signature, slot):
        """PythonQt's widget.connect("clicked(bool)", slot): the slot gets at most the signature's arguments."""
        name, _, rest = signature.partition("(")
        nargs = len([a for a in rest.rstrip(")").split(",") if a.strip()])
        self._signal(name).connect(slot, nargs)
        return True

    def disconnect(self, signature, slot=None):
        self._signal(signature.partition("(")[0]).disconnect(slot)

    def property(self, name):
        return self._props.get(name)

    def setProperty(self, name, value):
        self._props[name] = value

    def click(self):
        self.clicked.emit(self.checked)

    # tree
    def setParent(self, parent):
        old = self.__dict__.get("_parent")
        if old is not None and self in old._children:
            old._children.remove(self)
        self.__dict__["_parent"] = parent if isinstance(parent, _QObject) else None
        if isinstance(parent, _QObject):
            parent._children.append(self)

    def parent(self):
        return self._parent

    def parentWidget(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None):
        out = []
        for c in self._children:
            if cls is None or isinstance(c, cls) or getattr(cls, "__name__", "") in ("QWidget", "QObject"):
                out.append(c)
            out += c.findChildren(cls)
        return out

    def isWidgetType(self):
        return True

    def layout(self):
        return self.__dict__.get("_layout")

    def setLayout(self, layout):
        self.__dict__["_layout"] = layout
        layout.__dict__["_owner"] = self
        for w in layout._items:
            w.setParent(self)

    # the few values other code computes with
    def windowFlags(self):
        return _Flag(0)

    def isVisible(self):
        return False

    def setVisible(self, visible):
        self.visible = visible

    def setEnabled(self, enabled):
        self.enabled = enabled

    def setText(self, text):
        self.text = text

    def setRange(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    # combo boxes: as QComboBox, the first item added to an empty box becomes the current one
    def clear(self):
        self._items.clear()
        self.currentIndex, self.currentText = -1, ""

    def addItem(self, text, *args):
        self.addItems([text])

    def addItems(self, items):
        self._items.extend(items)
        if self.currentIndex == -1 and self._items:
            self.currentIndex, self.currentText = 0, self._items[0]

    def count(self):
        return len(self._items)


class _Layout(_QObject):
    def __init__(self, *args, **kwargs):
        super().__init__(**kwargs)
        self.__dict__["_owner"] = None
        if args and isinstance(args[0], _QObject):
            args[0].setLayout(self)

    def addWidget(self, widget, *args):
        self._items.append(widget)
        if self._owner is not None:
            widget.setParent(self._owner)

    def removeWidget(self, widget):
        self._items.remove(widget)

    def itemAt(self, index):
        widget = self._items[index]
        return types.SimpleNamespace(widget=lambda: widget)

    def parentWidget(self):
        return self._owner


class _QFile(_QObject):
    def __init__(self, path="", *args):
        super().__init__()
        self.__dict__["path"] = str(path)

    def exists(self):
        return Path(self.path).is_file()

    def open(self, mode):
        return True


class _QSettings(_QObject):
    store: dict = {}

    def value(self, key, default=None):
        return self.store.get(key, default)

    def setValue(self, key, value):
        self.store[key] = value

    def contains(self, key):
        return key in self.store


def _ui_value(prop):
    for child in prop:
        if child.tag == "bool":
            return child.text == "true"
        if child.tag == "number":
            return int(child.text)
        if child.tag == "double":
            return float(child.text)
        if child.tag in ("string", "set", "enum", "cstring"):
            return child.text or ""
    return None


class _QUiLoader(_QObject):
    """Builds stand-in widgets from a Qt Designer .ui file: class, object name, properties, parents."""

    def load(self, qfile, parent=None):
        root = ET.parse(qfile.path).getroot().find("widget")
        return self._widget(root, parent)

    def _widget(self, element, parent):
        cls_name = element.get("class")
        owner = ctk_module if cls_name.startswith("ctk") else (
            sys.modules["slicer"] if cls_name.startswith(("qMRML", "qSlicer")) else qt_module)
        widget = getattr(owner, cls_name)(parent) if parent is not None else getattr(owner, cls_name)()
        widget.name = widget.objectName = element.get("name")
        for prop in element.findall("property"):
            value = _ui_value(prop)
            if prop.get("stdset") == "0":
                widget.setProperty(prop.get("name"), value)
            elif value is not None:
                setattr(widget, prop.get("name"), value)
        self._load_children(element, widget)
        return widget

    def _load_children(self, element, widget):
        for child in element:
            if child.tag == "widget":
                self._widget(child, widget)
            elif child.tag in ("layout", "item"):
                self._load_children(child, widget)


class _QtModule(types.ModuleType):
    """`qt` / `ctk`: every class name is a stand-in class, made once."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        base = _Layout if name.endswith("Layout") else _QObject
        cls = _QtMeta(name, (base,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


qt_module = _QtModule("qt", "stand-in for PythonQt's qt module (tests only)")
ctk_module = _QtModule("ctk", "stand-in for PythonQt's ctk module (tests only)")
for _name, _cls in (("QFile", _QFile), ("QSettings", _QSettings), ("QUiLoader", _QUiLoader)):
    setattr(qt_module, _name, _QtMeta(_name, (_cls,), {"__module__": "qt"}))
qt_module.Widget = qt_module.QWidget


def slicer_layout_manager():
    """Stand-in for qSlicerLayoutManager (no views: there is no main window)."""
    return qt_module.QObject(sliceViewCount=0, threeDViewCount=0, tableViewCount=0, plotViewCount=0)


# --- slicer.app -------------------------------------------------------------------------------
class _StandInApp:
    """Stand-in for slicer.app (qSlicerApplication) with what the module and the framework use."""

    applicationName = "Slicer"

    def __init__(self, work: Path, testing: bool, application_logic):
        self._testing = testing
        self.temporaryPath = str(work / "temporary")
        self.cachePath = str(work / "cache")
        Path(self.temporaryPath).mkdir(parents=True, exist_ok=True)
        Path(self.cachePath).mkdir(parents=True, exist_ok=True)
        self.slots: dict = {}
        self._application_logic = application_logic
        self._module_manager = qt_module.QObject()
        self._layout_manager = slicer_layout_manager()

    def testingEnabled(self):
        return self._testing

    def commandOptions(self):
        return types.SimpleNamespace(noMainWindow=True, testingEnabled=self._testing)

    def translate(self, context, text):
        return text

    def connect(self, signature, slot):
        self.slots.setdefault(signature, []).append(slot)
        return True

    def emit_startup_completed(self):
        for slot in self.slots.get("startupCompleted()", []):
            slot()

    def applicationLogic(self):
        return self._application_logic

    def moduleManager(self):
        return self._module_manager

    def topLevelWidgets(self):
        return []

    def layoutManager(self):
        return self._layout_manager

    def screens(self):
        return []

    def thread(self):
        return None   # == qt.QThread.currentThread(): the tests run on the "main thread"

    def processEvents(self, *args):
        pass

    def setOverrideCursor(self, *args):
        pass

    def restoreOverrideCursor(self):
        pass

    def userSettings(self):
        return qt_module.QSettings()

    settings = userSettings


class _LoadedModule(_QObject):
    """Stand-in for a loaded module object (slicer.modules.<name>, a qSlicerAbstractCoreModule): its
    path and its logic (a real one); its other Qt methods (showSequenceBrowser, ...) do nothing."""

    def __init__(self, path=None, logic=None):
        super().__init__()
        self.__dict__.update(path=str(path) if path else None, _logic=logic)

    def logic(self):
        return self._logic


# --- the framework ----------------------------------------------------------------------------
_FRAMEWORK_MODULES = ("slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.packaging",
                      "slicer.i18n")


class SlicerFramework:
    """Slicer's framework loaded over slicer-core, the application stand-ins in place; `close()` undoes it."""

    def __init__(self, work: Path, testing: bool = True):
        import slicer  # the slicer-core wheel, first
        import slicer.util

        if not FRAMEWORK.is_dir():
            raise RuntimeError(f"Slicer's framework files are missing: {FRAMEWORK} (../shared/slicer)")
        self.slicer = slicer
        self.work = Path(work)
        self._saved_modules = {k: v for k, v in sys.modules.items()
                               if k in ("qt", "ctk", "SampleData", "COMPASS", "PyTorchUtils")
                               or k.startswith(_FRAMEWORK_MODULES)}
        self._saved_attrs = {n: getattr(slicer, n) for n in ("app", "modules", "mrmlScene", "selfTests",
                                                             *SLICER_WIDGET_NAMES, *[m.split(".")[1] for m in _FRAMEWORK_MODULES])
                             if hasattr(slicer, n)}
        self._saved_path = list(slicer.__path__)
        self._saved_sys_path = list(sys.path)
        self._saved_numba = os.environ.get("NUMBA_CACHE_DIR")
        for k in list(sys.modules):
            if k.startswith(_FRAMEWORK_MODULES):
                del sys.modules[k]

        sys.modules["qt"], sys.modules["ctk"] = qt_module, ctk_module
        for name in SLICER_WIDGET_NAMES:
            setattr(slicer, name, _QtMeta(name, (_QObject,), {"__module__": "slicer"}))
        self.scene, self.logics = self._application_scene()
        slicer.mrmlScene = self.scene
        slicer.app = self.app = _StandInApp(self.work, testing, self.logics["application"])
        slicer.modules = types.SimpleNamespace(**{n: _LoadedModule(logic=self.logics[n])
                                                  for n in ("segmentations", "sequences", "colors", "plots")})
        slicer.__path__.append(str(FRAMEWORK))
        self.ScriptedLoadableModule = importlib.import_module("slicer.ScriptedLoadableModule")
        self.parameterNodeWrapper = importlib.import_module("slicer.parameterNodeWrapper")
        self.packaging = importlib.import_module("slicer.packaging")
        self.i18n = importlib.import_module("slicer.i18n")
        self.module = None
        self._widgets = []

    def _application_scene(self):
        """The application's scene and module logics, set up as Slicer's application does (real classes)."""
        slicer = self.slicer
        scene = slicer.vtkMRMLScene()
        home = self.work / "slicer-home"
        (home / "ColorFiles").mkdir(parents=True, exist_ok=True)
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(str(home / "cache"))
        io_manager = slicer.vtkDataIOManager()
        io_manager.SetCacheManager(cache)
        scene.SetCacheManager(cache)
        scene.SetDataIOManager(io_manager)
        app_logic = slicer.vtkMRMLApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.SetHomeDirectory(str(home))
        app_logic.SetShareDirectory(".")
        logics = {"application": app_logic, "keepalive": [cache, io_manager]}
        for name, cls in (("segmentations", "vtkSlicerSegmentationsModuleLogic"), ("sequences", "vtkSlicerSequencesLogic"),
                          ("colors", "vtkSlicerColorLogic"), ("plots", "vtkSlicerPlotsLogic")):
            logic = getattr(slicer, cls)()
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            logics[name] = logic
        return scene, logics

    # --- loading modules as the application does ----------------------------------------------
    def load_module(self, module_file: Path = MODULE_FILE):
        """Import a scripted module file as Slicer does (its folder on sys.path, registered in sys.modules),
        instantiate its module class with a stand-in parent and register it under slicer.modules."""
        module_file = Path(module_file)
        name = module_file.stem
        sys.path.insert(0, str(module_file.parent))
        spec = importlib.util.spec_from_file_location(name, module_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent = qt_module.QObject(path=str(module_file), isEntered=False)
        instance = getattr(module, name)(parent)
        setattr(self.slicer.modules, name.lower(), _LoadedModule(path=module_file))
        module._instance = instance
        self.module = module
        return module

    def load_sample_data(self):
        """Slicer's Sample Data module (shared/slicer/SampleData), importable as `SampleData`."""
        sys.path.insert(0, str(SAMPLE_DATA))
        return importlib.import_module("SampleData")

    def widget(self, module=None):
        """The module's widget, set up inside a stand-in qMRMLWidget as the application does."""
        module = module or self.module
        parent = self.slicer.qMRMLWidget()
        parent.setLayout(qt_module.QVBoxLayout())
        parent.isEntered = True
        widget = getattr(module, module.__name__ + "Widget")(parent)
        widget.setup()
        self._widgets.append(widget)
        return widget

    def close(self):
        import vtk

        slicer = self.slicer
        for widget in self._widgets:   # the application calls cleanup() when it unloads a module
            widget.cleanup()
        shown = vtk.vtkObject.GetGlobalWarningDisplay()
        vtk.vtkObject.GlobalWarningDisplayOff()   # the logics warn about the scene going away: expected
        try:
            for name in ("segmentations", "sequences", "colors", "plots", "application"):
                self.logics[name].SetMRMLScene(None)
            self.scene.Clear(1)
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(shown)
        for k in [k for k in sys.modules if k in ("qt", "ctk", "SampleData", "PyTorchUtils") or k.startswith(_FRAMEWORK_MODULES)
                  or (self.module is not None and k == self.module.__name__)]:
            del sys.modules[k]
        sys.modules.update(self._saved_modules)
        for name in ("app", "modules", "mrmlScene", "selfTests", *SLICER_WIDGET_NAMES,
                     *[m.split(".")[1] for m in _FRAMEWORK_MODULES]):
            if name in self._saved_attrs:
                setattr(slicer, name, self._saved_attrs[name])
            elif hasattr(slicer, name):
                delattr(slicer, name)
        slicer.__path__[:] = self._saved_path
        sys.path[:] = self._saved_sys_path
        if self._saved_numba is None:
            os.environ.pop("NUMBA_CACHE_DIR", None)
        else:
            os.environ["NUMBA_CACHE_DIR"] = self._saved_numba


# --- pip, recorded ----------------------------------------------------------------------------
class PipRecorder:
    """Replaces slicer.util.executePythonModule, the one function slicer.packaging spawns pip with:
    records each `python -m pip ...` and answers as a successful pip; `on_install(requirements)` may
    make the installed packages appear (see HiddenDistributions)."""

    def __init__(self, on_install=None):
        self.calls = []
        self.on_install = on_install

    def __call__(self, module, args, blocking=True, logCallback=None, completedCallback=None):
        self.calls.append((module, list(args)))
        if self.on_install is not None and args and args[0] == "install":
            self.on_install(self.requirements_of(args))
        if completedCallback is not None:
            completedCallback(0)

    def installs(self) -> list:
        return [args for module, args in self.calls if module == "pip" and args[:1] == ["install"]]

    @staticmethod
    def requirements_of(args) -> list:
        """The requirement arguments of `pip install ...` (options and their values left out)."""
        out, skip = [], False
        for a in args[1:]:
            if skip:
                skip = False
            elif a in ("-c", "--constraint", "-r", "--requirement", "-i", "--index-url", "--extra-index-url"):
                skip = True
            elif not a.startswith("-"):
                out.append(a)
        return out

    @staticmethod
    def constraints_of(args) -> str | None:
        return args[args.index("-c") + 1] if "-c" in args else None


class HiddenDistributions:
    """Makes installed distributions look absent to importlib.metadata (as on a fresh Slicer), so the
    real pip_check reports them missing; `reveal(names)` is the pip install that makes them appear."""

    def __init__(self, monkeypatch, names):
        import importlib.metadata as md

        from packaging.utils import canonicalize_name

        self._canon = canonicalize_name
        self.hidden = {canonicalize_name(n) for n in names}
        real_version, real_distribution = md.version, md.distribution

        def version(name):
            if self._canon(name) in self.hidden:
                raise md.PackageNotFoundError(name)
            return real_version(name)

        def distribution(name):
            if self._canon(name) in self.hidden:
                raise md.PackageNotFoundError(name)
            return real_distribution(name)

        monkeypatch.setattr(md, "version", version)
        monkeypatch.setattr(md, "distribution", distribution)

    def reveal(self, requirements):
        from packaging.requirements import Requirement

        for r in requirements:
            self.hidden.discard(self._canon(Requirement(r).name))


def fake_pytorch_utils(hidden: HiddenDistributions | None = None):
    """A stand-in for the PyTorch extension's PyTorchUtils module (not part of Slicer; not in shared/),
    with the real API COMPASS calls (PyTorchUtilsLogic().installTorch(askConfirmation,
    forceComputationBackend, torchVersionRequirement, ...), torchInstalled()); records the calls."""
    module = types.ModuleType("PyTorchUtils")
    module.__spec__ = importlib.machinery.ModuleSpec("PyTorchUtils", None)
    module.calls = []

    class PyTorchUtilsLogic:
        @staticmethod
        def torchInstalled():
            module.calls.append(("torchInstalled",))   # the real one imports torch
            return hidden is None or "torch" not in hidden.hidden

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            module.calls.append(("installTorch", askConfirmation, torchVersionRequirement))
            if hidden is not None:
                hidden.reveal(["torch"])
            return types.SimpleNamespace(__version__="2.13.0")

    module.PyTorchUtilsLogic = PyTorchUtilsLogic
    return module


# --- imports that must not happen -------------------------------------------------------------
# Packages Slicer does not bundle (and numba/torch, slow to import): none may be imported by loading the
# module, setting up its widget or checking the dependencies, before the user agreed to install them.
NOT_BUNDLED = ("torch", "radiomics", "pandas", "sklearn", "skimage", "yaml", "numba", "matplotlib",
               "safetensors", "dask", "tqdm", "pyarrow", "jinja2")


class ImportRecorder:
    """A meta-path finder that records (and refuses) imports of the given top-level packages."""

    def __init__(self, names=NOT_BUNDLED):
        self.names = set(names)
        self.attempts = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            self.attempts.append(fullname)
            raise ImportError(f"{fullname} is not installed (blocked by the test)")
        return None

    def install(self):
        for name in list(sys.modules):
            if name.split(".")[0] in self.names:
                raise RuntimeError(f"{name} was imported before the recorder was installed")
        sys.meta_path.insert(0, self)
        return self


# --- fixtures (import them into a test module: `from helpers_slicer_framework import slicer_framework`) ---
def copy_module(dest: Path, extra_requirements=()) -> Path:
    """A copy of the module folder (COMPASS.py + Resources/) with extra lines in its requirements.txt,
    e.g. a requirement nothing satisfies, to see what the module does when a package is missing."""
    import shutil

    target = Path(dest) / MODULE_DIR.name
    shutil.copytree(MODULE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "CMakeLists.txt"))
    if extra_requirements:
        with open(target / "Resources" / "requirements.txt", "a", encoding="utf-8") as f:
            f.write("".join(f"\n{r}" for r in extra_requirements) + "\n")
    return target / MODULE_FILE.name


try:
    import pytest
except ImportError:   # the helper is also used by subprocesses that need no fixtures
    pytest = None

if pytest is not None:
    @pytest.fixture
    def slicer_framework(tmp_path):
        """A factory: `slicer_framework(testing=True)` -> SlicerFramework; all are closed after the test."""
        made = []

        def make(testing: bool = True) -> SlicerFramework:
            fw = SlicerFramework(tmp_path / f"application{len(made)}", testing=testing)
            made.append(fw)
            return fw

        yield make
        for fw in reversed(made):
            fw.close()
