"""The module's long work stays off Slicer's GUI thread (issue 12, item 7): on Slicer's real framework
(helpers_slicer_framework.py; stand-ins only for Qt/CTK widgets and slicer.app), the widget's Run twin
runs the twin in a background process (COMPASSLib.background), its progress bar moves while the
application's event loop keeps being served, and Cancel stops the child and leaves the output folder as
it was. A failure is one message box; an empty Output folder never saves into the working folder."""
from __future__ import annotations

import pytest

from helpers_slicer_framework import slicer_framework  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def two_fractions(small_cohort, tmp_path_factory):
    from COMPASSLib.pipeline import write_subset

    return write_subset(small_cohort, tmp_path_factory.mktemp("jobs") / "cohort", fractions=2)


def test_run_twin_button_runs_in_the_background_and_cancel_stops_it(slicer_framework, two_fractions, tmp_path,
                                                                    monkeypatch):
    fw = slicer_framework()
    m = fw.load_module()
    w = fw.widget(m)
    monkeypatch.setattr(w.logic, "ensureDependencies", lambda askUser=None: True)   # installed: the .venv
    events, bars, messages = [], [], []
    monkeypatch.setattr(fw.slicer.app, "processEvents", lambda *a: events.append(1))
    progress = w._progress

    def watching(value, message):   # the widget's own callback; Cancel pressed once the evaluation starts
        bars.append(w.ui.progressBar.value)
        messages.append(message)
        if "fold" in message:
            w.onCancel()
        return progress(value, message)

    monkeypatch.setattr(w, "_progress", watching)
    p = w._parameterNode
    p.cohortPath = two_fractions
    p.outputPath = tmp_path / "out"
    p.useGPU = False
    w.ui.runTwinButton.click()
    assert any("features" in m_ for m_ in messages) and any("fold" in m_ for m_ in messages)
    assert len(set(bars)) >= 3, f"the progress bar must move, not jump: {sorted(set(bars))}"
    assert len(events) >= 10, "the application's events must be processed while the job runs"
    assert "cancelled" in w.ui.statusLabel.text
    out = tmp_path / "out"
    assert not out.exists() or not [f for f in out.iterdir() if f.name != "cache"], "Cancel left outputs behind"
    assert not [f for f in tmp_path.iterdir() if ".partial-" in f.name]


def test_empty_output_folder_never_saves_into_the_working_folder(slicer_framework, monkeypatch, tmp_path):
    from COMPASSLib.errors import InputError

    fw = slicer_framework()
    m = fw.load_module()
    for empty in ("", ".", "relative/folder"):
        with pytest.raises(InputError, match="choose an Output folder"):
            m.COMPASSLogic.scenePath(empty, "SYN001")
    assert m.COMPASSLogic.scenePath(tmp_path, "SYN/001") == tmp_path / "scenes" / "SYN_001.mrb"


def test_run_twin_trains_with_the_warning_sensitivity_the_user_set(slicer_framework, two_fractions, tmp_path,
                                                                  monkeypatch):
    """The spin box's share of toxicities reaches the trained twin: its model.json records the rule and the
    target (test_twin_model checks what threshold the rule picks). A run before any patient was picked
    shows the cohort's first patient, not an error box."""
    import json

    import pandas as pd

    fw = slicer_framework()
    m = fw.load_module()
    w = fw.widget(m)
    monkeypatch.setattr(w.logic, "ensureDependencies", lambda askUser=None: True)   # installed: the .venv
    p = w._parameterNode
    p.cohortPath = two_fractions
    p.outputPath = tmp_path / "out"
    p.useGPU = False
    p.warningSensitivity = 0.95
    w.ui.runTwinButton.click()
    settings = json.loads((tmp_path / "out" / "model" / "model.json").read_text())["settings"]
    assert (settings["threshold_rule"], settings["target_sensitivity"]) == ("sensitivity", 0.95)
    assert p.riskPath == tmp_path / "out" / "risk.csv"
    assert pd.read_csv(p.riskPath)["threshold"].notna().all()
    # no patient was picked before the run: the widget lists the cohort's and shows the first one's risk
    assert w.ui.patientComboBox.currentText == "SYN001"
    assert fw.scene.GetFirstNodeByName("SYN001 risk by fraction") is not None
