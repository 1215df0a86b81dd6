"""A what-if projection in a real MRML scene (slicer-core): table, chart with the delivered part solid and
each scenario's projection in its own dashed style, the projected cumulative BED as a dose volume whose
voxels are the image's, and a second projection replacing the first."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

slicer = pytest.importorskip("slicer")

from COMPASSLib import mrml  # noqa: E402
from COMPASSLib.errors import InputError  # noqa: E402


def _projection(after=2, n=4):
    rows = []
    for scenario, factor in (("as_planned", 1.0), ("Heart=0.5", 0.5)):
        for organ in ("Heart", "Esophagus"):
            for k in range(1, n + 1):
                f = factor if (k > after and organ == "Heart") else 1.0
                risk = min(0.1 * k * f, 1.0)
                rows.append(dict(scenario=scenario, patient="SYN001", organ=organ, fraction=k, delivered=k <= after,
                                 bed_mean_gy=5.0 * k * f, eqd2_mean_gy=4.0 * k * f, risk=risk, ci_low=risk / 2,
                                 ci_high=min(risk * 2, 1.0), lkb_ntcp=0.01 * k))
    return pd.DataFrame(rows)


def _bed_image():
    import SimpleITK as sitk

    a = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    image = sitk.GetImageFromArray(a)
    image.SetSpacing((2.0, 2.0, 3.0))
    image.SetMetaData("COMPASS_scenario", "Heart=0.5")
    return image, a


def test_projection_becomes_table_chart_and_bed_volume():
    scene = mrml.new_scene()
    image, a = _bed_image()
    nodes = mrml.add_whatif(_projection(), "SYN001", scene, bed_images={"Heart": image})
    table = scene.GetNodeByID(nodes.table)
    assert table.GetNumberOfRows() == 16 and table.GetAttribute("COMPASS.after") == "2"
    chart = scene.GetNodeByID(nodes.chart)
    series = [scene.GetNodeByID(chart.GetNthPlotSeriesNodeID(i)) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    names = [s.GetName() for s in series]
    # per organ: delivered once, then per scenario its projection and the interval's two ends
    assert len(series) == 2 * (1 + 2 * 3)
    heart_spared = series[names.index("SYN001 Heart Heart=0.5")]
    assert heart_spared.GetLineStyle() == heart_spared.LineStyleDashDot
    delivered = series[names.index("SYN001 Heart delivered")]
    assert delivered.GetLineStyle() == delivered.LineStyleSolid
    t = heart_spared.GetTableNode()
    # the projected line starts at the last delivered fraction, then follows the spared risks
    assert [t.GetTable().GetValue(r, 0).ToDouble() for r in range(t.GetNumberOfRows())] == [2, 3, 4]
    assert [t.GetTable().GetValue(r, 1).ToDouble() for r in range(t.GetNumberOfRows())] == pytest.approx([0.2, 0.15, 0.2])
    volume = scene.GetNodeByID(nodes.volumes["Heart"])
    assert "projected BED (Heart=0.5)" in volume.GetName()
    assert np.array_equal(slicer.util.arrayFromVolume(volume), a)
    mrml.release_scene(scene)


def test_a_new_projection_replaces_the_previous_one():
    scene = mrml.new_scene()
    image, _ = _bed_image()
    mrml.add_whatif(_projection(), "SYN001", scene, bed_images={"Heart": image})
    before = scene.GetNumberOfNodes()
    nodes = mrml.add_whatif(_projection(after=3), "SYN001", scene)
    assert scene.GetNodeByID(nodes.table).GetAttribute("COMPASS.after") == "3"
    assert len([n for n in mrml.nodes_by_class(scene, "vtkMRMLPlotChartNode")
                if n.GetAttribute("COMPASS.content") == "whatif"]) == 1
    assert not [n for n in mrml.nodes_by_class(scene, "vtkMRMLScalarVolumeNode")
                if n.GetAttribute("COMPASS.content") == "whatif"]
    assert scene.GetNumberOfNodes() < before
    with pytest.raises(InputError, match="no rows for patient SYN009"):
        mrml.add_whatif(_projection(), "SYN009", scene)
    mrml.release_scene(scene)
