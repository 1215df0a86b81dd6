"""The module's What if section on Slicer's real framework (stand-ins only for Qt/CTK widgets and
slicer.app): one dose-scale slider per organ of the trained model, a slider move writes the scenario into
the parameter node, and projecting puts the table, the chart (delivered solid, projected dashed) and the
scaled organ's projected cumulative BED into the scene, computed by twin.whatif from the patient's files."""
from __future__ import annotations

import numpy as np
import pytest

from helpers_slicer_framework import slicer_framework  # noqa: F401 - fixture


def test_sliders_and_projection_in_the_scene(slicer_framework, small_cohort, small_twin, monkeypatch):
    fw = slicer_framework()
    m = fw.load_module()
    w = fw.widget(m)
    monkeypatch.setattr(w.logic, "ensureDependencies", lambda askUser=None: True)   # installed: the .venv
    p = w._parameterNode
    p.cohortPath, p.modelPath, p.whatIfAfter = small_cohort, small_twin, 2
    w.ui.refreshPatientsButton.click()
    w.ui.patientComboBox.currentText = "SYN001"
    w.ui.whatIfOrgansButton.click()
    assert sorted(w._whatIfSliders) == ["Esophagus", "Heart", "SpinalCord"]
    assert all(s.value == 1.0 and s.maximum == 1.5 for s in w._whatIfSliders.values())
    w._whatIfSliders["Heart"].value = 0.5
    w._whatIfSliders["Heart"].valueChanged.emit(0.5)
    assert p.whatIfScales == "Heart=0.5"
    w.ui.projectWhatIfButton.click()
    assert "projected SYN001 after fraction 2" in w.ui.statusLabel.text
    table = [n for n in fw.slicer.util.getNodesByClass("vtkMRMLTableNode")
             if n.GetAttribute("COMPASS.content") == "whatif" and n.GetName() == "SYN001 what-if"][0]
    rows = fw.slicer.util.dataframeFromTable(table)
    last = rows[(rows["organ"] == "Heart") & (rows["fraction"] == rows["fraction"].max())].set_index("scenario")
    # three fractions on file, two delivered: the third's Heart dose halved lowers its cumulative BED
    assert set(last.index) == {"as_planned", "Heart=0.5"}
    assert last.loc["Heart=0.5", "bed_mean_gy"] < last.loc["as_planned", "bed_mean_gy"]
    # the change against as planned, with its paired interval (0 for as planned itself)
    assert last.loc["as_planned", ["change", "change_low", "change_high"]].tolist() == [0.0, 0.0, 0.0]
    spared = last.loc["Heart=0.5"]
    assert spared["change"] == pytest.approx(spared["risk"] - last.loc["as_planned", "risk"], abs=1e-12)
    assert spared["change_low"] <= spared["change"] <= spared["change_high"]
    volumes = [n for n in fw.slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
               if n.GetAttribute("COMPASS.content") == "whatif"]
    assert [v.GetAttribute("COMPASS.organ") for v in volumes] == ["Heart"]
    assert np.nanmax(fw.slicer.util.arrayFromVolume(volumes[0])) > 0
    w.ui.projectWhatIfButton.click()          # again: replaces, does not pile up
    assert len([n for n in fw.slicer.util.getNodesByClass("vtkMRMLPlotChartNode")
                if n.GetAttribute("COMPASS.content") == "whatif"]) == 1
