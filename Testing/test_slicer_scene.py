"""The scene `load_patient` builds, on the real slicer-core MRML, as Slicer and SlicerRT read it: dose,
BED and EQD2 (and texture maps) identified as dose with their unit found the way SlicerRT finds it; a
saved scene that keeps every node's data for the next save; slice views, window/level, colours, 3D
organ surfaces and the sequence browser ready without manual steps; each fraction's voxels held once.

The scene is queried with plain MRML calls (sequences by their COMPASS.modality attribute, proxies
through the browser), not through PatientNodes, so the checks read the scene as another module would."""
from __future__ import annotations

import numpy as np
import pytest

import slicer  # slicer-core is a pinned test dependency: fail, never skip
from vtk.util import numpy_support

from COMPASSLib import mrml  # noqa: E402

STUDY = "Study"
# SlicerRT's names (SlicerRtCommon/vtkSlicerRtCommon.cxx), written out here, not taken from the code under test
DOSE_VOLUME = "DicomRtImport.DoseVolume"
UNIT_NAME, UNIT_VALUE = "DicomRtImport.DoseUnitName", "DicomRtImport.DoseUnitValue"
FOUR_UP = slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView


def make_views_as_the_application_does(scene):
    """The views' nodes of Slicer's application: its layout logic makes the layout node and the view
    nodes of the layout, each slice view's logic the composite node of its slice node."""
    app_logic = mrml.module_logics(scene)["application"]
    layout = slicer.vtkMRMLLayoutLogic()
    layout.SetMRMLScene(scene)
    layout.GetLayoutNode().SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    logics = []
    for slice_node in mrml.nodes_by_class(scene, "vtkMRMLSliceNode"):
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        logic.SetSliceNode(slice_node)
        logics.append(logic)
    return [layout, *logics]   # kept alive while the scene is used, as the views keep theirs


@pytest.fixture(scope="module")
def patient(small_cohort):
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(small_cohort)
    pid = cohort.patient_ids[0]
    s = mrml.new_scene()
    views = make_views_as_the_application_does(s)
    nodes = mrml.load_patient(cohort, pid, s)
    yield {"scene": s, "pid": pid, "nodes": nodes, "cohort": cohort, "fractions": nodes.fractions}
    for logic in views:
        logic.SetMRMLScene(None)
    mrml.release_scene(s)


def sequences(scene) -> dict:
    return {seq.GetAttribute("COMPASS.modality"): seq for seq in mrml.nodes_by_class(scene, "vtkMRMLSequenceNode")}


def browser(scene):
    browsers = mrml.nodes_by_class(scene, "vtkMRMLSequenceBrowserNode")
    assert len(browsers) == 1
    return browsers[0]


def proxy(scene, modality):
    return browser(scene).GetProxyNode(sequences(scene)[modality])


def items(seq) -> list:
    return [seq.GetNthDataNode(i) for i in range(seq.GetNumberOfDataNodes())]


def buffer(volume):
    """(address, bytes) of a volume's voxel buffer."""
    arr = numpy_support.vtk_to_numpy(volume.GetImageData().GetPointData().GetScalars())
    return arr.__array_interface__["data"][0], arr.nbytes


# --- 5: SlicerRT takes COMPASS's dose, BED and EQD2 ------------------------------------------------
def test_dose_bed_and_eqd2_are_slicerrt_dose_volumes_with_the_course_unit(patient):
    s = patient["scene"]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(s)
    seqs = sequences(s)
    for modality in ("dose", "bed", "eqd2"):
        shown = proxy(s, modality)
        for node in (shown, *items(seqs[modality])):   # the proxy keeps it whichever fraction it shows
            assert node.GetAttribute(DOSE_VOLUME) == "1", (modality, node.GetName())
        # as SlicerRT's DVH / Isodose / Dose Accumulation find the unit: the study among the SH ancestors
        item = sh.GetItemByDataNode(shown)
        assert item, modality
        study = sh.GetItemAncestorAtLevel(item, STUDY)
        assert study and sh.GetItemName(study) == "Course" and sh.GetItemName(sh.GetItemParent(study)) == patient["pid"]
        assert sh.GetAttributeFromItemAncestor(item, UNIT_NAME, STUDY) == "GY", modality
        assert float(sh.GetAttributeFromItemAncestor(item, UNIT_VALUE, STUDY)) == 1.0, modality
    for modality in ("bed", "eqd2"):   # which alpha/beta made them
        assert all(n.GetAttribute("COMPASS.alpha_beta_gy").startswith("organ map") for n in items(seqs[modality]))
    assert proxy(s, "ct").GetAttribute(DOSE_VOLUME) is None


# --- 6: a saved scene keeps every node's data for the next save -----------------------------------
def storable(scene) -> list:
    return [n for n in mrml.nodes_by_class(scene, "vtkMRMLStorableNode")
            if not n.GetHideFromEditors() and n.GetSaveWithScene()]


def assert_same_data(a, b):
    assert a.GetClassName() == b.GetClassName(), a.GetName()
    if a.IsA("vtkMRMLVolumeNode"):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(b), slicer.util.arrayFromVolume(a), a.GetName())
    elif a.IsA("vtkMRMLSegmentationNode"):
        assert list(b.GetSegmentation().GetSegmentIDs()) == list(a.GetSegmentation().GetSegmentIDs())
    elif a.IsA("vtkMRMLSequenceNode"):
        assert [b.GetNthIndexValue(i) for i in range(b.GetNumberOfDataNodes())] == \
            [a.GetNthIndexValue(i) for i in range(a.GetNumberOfDataNodes())]
        for x, y in zip(items(a), items(b)):
            assert_same_data(x, y)
    elif a.IsA("vtkMRMLTextNode"):
        assert b.GetText() == a.GetText()


def test_saved_scene_is_left_as_slicers_writer_leaves_it_and_saves_again_whole(patient, tmp_path):
    s = patient["scene"]
    # a node read from a file: its storage file name must survive the save (the bundle writer renames it)
    probe = mrml.add_volume(mrml.volume_to_image(proxy(s, "ct")), "probe read from a file", s)
    probe.AddDefaultStorageNode()
    probe.GetStorageNode().SetFileName(str(tmp_path / "probe.nrrd"))
    try:
        first = mrml.save_scene(tmp_path / "first.mrb", s)
        assert probe.GetStorageNode().GetFileName() == str(tmp_path / "probe.nrrd")
        # qSlicerSceneWriter::writeToMRB: every storable node modified since read, the scene's URL the .mrb
        unsaved = [n.GetName() for n in storable(s) if not n.GetModifiedSinceRead()]
        assert unsaved == [], f"marked saved after the .mrb, would be skipped by the next save: {unsaved}"
        assert s.GetURL() == str(first.absolute())
        second = mrml.save_scene(tmp_path / "second.mrb", s)
        back = mrml.load_scene(second)
        try:
            for node in storable(s):
                copy = back.GetFirstNodeByName(node.GetName())
                assert copy is not None, node.GetName()
                assert_same_data(node, copy)
        finally:
            mrml.release_scene(back)
    finally:
        s.RemoveNode(probe.GetDisplayNode())
        s.RemoveNode(probe.GetStorageNode())
        s.RemoveNode(probe)


def test_read_scene_is_left_as_slicers_reader_leaves_it(patient, tmp_path):
    """vtkMRMLScene::ReadFromMRB (what Slicer's .mrb reader calls): files named relative to the .mrb's
    folder, not in the unpack folder it removes, and every node modified since read (its data is only
    in memory), so a later save writes them all."""
    back = mrml.load_scene(mrml.save_scene(tmp_path / "scene.mrb", patient["scene"]))
    try:
        assert back.GetURL() == str(tmp_path / "scene.mrml")
        for node in storable(back):
            name = node.GetStorageNode().GetFileName() if node.GetStorageNode() else ""
            assert name.startswith("Data/"), (node.GetName(), name)
            assert node.GetModifiedSinceRead(), node.GetName()
    finally:
        mrml.release_scene(back)


# --- 8: the scene shows the patient without manual steps ------------------------------------------
def test_slice_views_show_ct_with_bed_over_it_and_organ_outlines(patient):
    s = patient["scene"]
    composites = mrml.nodes_by_class(s, "vtkMRMLSliceCompositeNode")
    assert sorted(c.GetLayoutName() for c in composites) == ["Green", "Red", "Yellow"]   # the views', no others
    ct, bed, seg = proxy(s, "ct"), proxy(s, "bed"), proxy(s, "segmentation")
    for c in composites:
        assert c.GetBackgroundVolumeID() == ct.GetID(), c.GetLayoutName()
        assert c.GetForegroundVolumeID() == bed.GetID(), c.GetLayoutName()
        assert 0.2 <= c.GetForegroundOpacity() <= 0.8
    display = seg.GetDisplayNode()
    assert display.GetVisibility() and display.GetVisibility2DOutline() and display.GetVisibility3D()
    slice_nodes = mrml.nodes_by_class(s, "vtkMRMLSliceNode")
    assert all(display.IsDisplayableInView(n.GetID()) for n in slice_nodes)
    assert s.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement() == FOUR_UP
    # fitted: each view's centre lies inside the CT
    bounds = [0.0] * 6
    ct.GetRASBounds(bounds)
    for n in slice_nodes:
        centre = [n.GetSliceToRAS().GetElement(i, 3) for i in range(3)]
        assert all(bounds[2 * i] - 1e-6 <= centre[i] <= bounds[2 * i + 1] + 1e-6 for i in range(3)), n.GetName()


def test_a_bare_slicer_core_scene_gets_the_applications_views_and_keeps_them_saved(small_cohort, tmp_path):
    """The batch case: no views in the scene; the .mrb must open with its layers."""
    from COMPASSLib.cohort import Cohort

    cohort = Cohort.load(small_cohort)
    s = mrml.new_scene()
    back = None
    try:
        nodes = mrml.load_patient(cohort, cohort.patient_ids[1], s, bed=False)
        names = {n.GetLayoutName(): n.GetOrientation() for n in mrml.nodes_by_class(s, "vtkMRMLSliceNode")}
        assert names == {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
        ct, dose = proxy(s, "ct"), proxy(s, "dose")
        layers = {(c.GetLayoutName(), c.GetBackgroundVolumeID(), c.GetForegroundVolumeID())
                  for c in mrml.nodes_by_class(s, "vtkMRMLSliceCompositeNode")}
        assert layers == {(v, ct.GetID(), dose.GetID()) for v in ("Red", "Yellow", "Green")}
        assert not [n for n in mrml.nodes_by_class(s, "vtkMRMLModelNode")], "slice-plane models of a passing logic"
        back = mrml.load_scene(mrml.save_scene(tmp_path / "views.mrb", s))
        got = {(c.GetLayoutName(), back.GetNodeByID(c.GetBackgroundVolumeID()).GetName(),
                back.GetNodeByID(c.GetForegroundVolumeID()).GetName())
               for c in mrml.nodes_by_class(back, "vtkMRMLSliceCompositeNode")}
        assert got == {(v, ct.GetName(), dose.GetName()) for v in ("Red", "Yellow", "Green")}
        assert back.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement() == FOUR_UP
        assert nodes.browser
    finally:
        if back is not None:
            mrml.release_scene(back)
        mrml.release_scene(s)


def test_ct_in_a_soft_tissue_window_and_dose_in_colour_with_no_dose_transparent(patient):
    s = patient["scene"]
    ct = proxy(s, "ct").GetDisplayNode()
    assert not ct.GetAutoWindowLevel() and (ct.GetWindow(), ct.GetLevel()) == (400.0, 40.0)
    seqs = sequences(s)
    for modality in ("dose", "bed", "eqd2"):
        display = proxy(s, modality).GetDisplayNode()
        # a planning system's dose wash: purple at 0 Gy, then blue, green, yellow, red at the series' maximum
        lut = display.GetColorNode().GetLookupTable()
        n = lut.GetNumberOfTableValues()
        wash = [lut.GetTableValue(i)[:3] for i in (0, n // 4, n // 2, 3 * n // 4, n - 1)]
        expected = [(0.8, 0.0, 1.0), (0.0, 0.4, 1.0), (0.0, 1.0, 0.39), (0.81, 1.0, 0.0), (1.0, 0.0, 0.0)]
        assert np.allclose(wash, expected, atol=0.02), (modality, wash)
        high = max(float(slicer.util.arrayFromVolume(n).max()) for n in items(seqs[modality]))
        # one scale for the whole series (a rising cumulative BED shows), 0 Gy transparent
        assert not display.GetAutoWindowLevel()
        assert display.GetWindowLevelMin() == pytest.approx(0.0)
        assert display.GetWindowLevelMax() == pytest.approx(high, rel=1e-6)
        assert display.GetApplyThreshold() and 0.0 < display.GetLowerThreshold() <= 0.01, modality


def test_organ_segmentation_has_a_3d_surface_for_every_organ(patient):
    s = patient["scene"]
    seg = proxy(s, "segmentation")
    organs = list(seg.GetSegmentation().GetSegmentIDs())
    assert organs
    for node in (seg, *items(sequences(s)["segmentation"])):   # every fraction keeps its surfaces
        assert node.GetSegmentation().ContainsRepresentation("Closed surface"), node.GetName()
    for organ in organs:
        assert seg.GetClosedSurfaceInternalRepresentation(organ).GetNumberOfPoints() > 0, organ
    assert seg.GetDisplayNode().GetPreferredDisplayRepresentationName3D() == "Closed surface"


def test_each_fractions_voxels_are_held_once(patient):
    s = patient["scene"]
    n = len(patient["fractions"])
    seqs = sequences(s)
    volumes = mrml.nodes_by_class(s, "vtkMRMLScalarVolumeNode") + \
        [node for seq in seqs.values() for node in items(seq) if node.IsA("vtkMRMLScalarVolumeNode")]
    for modality in ("ct", "pet", "dose", "bed", "eqd2"):
        held = dict(buffer(v) for v in volumes if v.GetAttribute("COMPASS.modality") == modality)
        one = buffer(items(seqs[modality])[0])[1]
        assert len(held) == n and sum(held.values()) == n * one, \
            f"{modality}: {len(held)} voxel buffers for {n} fractions"


def test_browser_starts_at_the_last_fraction_and_steps_the_cumulative_bed(patient):
    s = patient["scene"]
    b = browser(s)
    bed_items = items(sequences(s)["bed"])
    assert b.GetSelectedItemNumber() == len(bed_items) - 1
    assert b.GetIndexDisplayMode() == b.IndexDisplayAsIndexValue   # "fraction 3", not the item number
    bed = proxy(s, "bed")
    last = slicer.util.arrayFromVolume(bed).copy()
    np.testing.assert_array_equal(last, slicer.util.arrayFromVolume(bed_items[-1]))
    try:
        b.SetSelectedItemNumber(0)
        first = slicer.util.arrayFromVolume(bed).copy()
        np.testing.assert_array_equal(first, slicer.util.arrayFromVolume(bed_items[0]))
        assert bed.GetAttribute("COMPASS.fraction") == str(patient["fractions"][0])
    finally:
        b.SetSelectedItemNumber(len(bed_items) - 1)
    assert (last >= first).all() and last.sum() > first.sum()   # the cumulative BED rises


# --- 5 (texture maps): last, they change the slice views' foreground ---------------------------------
def test_texture_overlays_are_slicerrt_dose_volumes_in_their_features_unit(patient):
    s, nodes = patient["scene"], patient["nodes"]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(s)
    k = patient["fractions"][-1]
    features = ["firstorder:Mean", "firstorder:Variance", "firstorder:Entropy"]
    overlays = mrml.add_texture_maps(nodes, "SpinalCord", k, features, radius=1, bin_width_gy=1.0, scene=s)
    units = {}
    for node in overlays:
        assert node.GetAttribute(DOSE_VOLUME) == "1"
        item = sh.GetItemByDataNode(node)
        assert sh.GetItemAncestorAtLevel(item, STUDY)
        assert float(sh.GetAttributeFromItemAncestor(item, UNIT_VALUE, STUDY)) == 1.0
        units[node.GetAttribute("COMPASS.feature")] = sh.GetAttributeFromItemAncestor(item, UNIT_NAME, STUDY)
    assert units == {"firstorder:Mean": "GY", "firstorder:Variance": "GY^2", "firstorder:Entropy": ""}
    # over its own fraction's CT
    composites = mrml.nodes_by_class(s, "vtkMRMLSliceCompositeNode")
    assert all(c.GetBackgroundVolumeID() == proxy(s, "ct").GetID() for c in composites)
    assert proxy(s, "ct").GetAttribute("COMPASS.fraction") == str(k)


def test_texture_units_and_map_file_names():
    assert mrml.texture_unit("firstorder:90Percentile") == "GY"
    assert mrml.texture_unit("firstorder:TotalEnergy") == "GY^2*mm^3"
    assert mrml.texture_unit("glcm:Contrast") is None   # grey-level bins: no physical unit
    from COMPASSLib.mrml.texture import _feature_of_file

    assert _feature_of_file("Lung_L_glcm_JointEntropy.nrrd") == "glcm:JointEntropy"
    assert _feature_of_file("Heart_firstorder_Mean.nrrd") == "firstorder:Mean"


def test_fraction_nodes_kept_when_asked_are_dose_volumes_under_the_course_too():
    """keep_fraction_nodes=True: one node per modality and fraction besides the Sequence items (twice
    the voxels), under Course / Fraction k, where SlicerRT finds the same study."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.full((3, 4, 5), 2.0, np.float32))

    class F:
        ct, pet, dose, reference = image, None, image, image
        masks = {"Heart": sitk.Cast(image > 0, sitk.sitkUInt8)}

    s = mrml.new_scene()
    try:
        nodes = mrml.add_fraction_series("P7", [(1, F), (2, F)], s, keep_fraction_nodes=True)
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(s)
        for k in (1, 2):
            dose = s.GetNodeByID(nodes.volumes[("dose", k)])
            item = sh.GetItemByDataNode(dose)
            assert sh.GetItemName(sh.GetItemParent(item)) == f"Fraction {k}"
            assert dose.GetAttribute(DOSE_VOLUME) == "1"
            assert sh.GetAttributeFromItemAncestor(item, UNIT_NAME, STUDY) == "GY"
            assert s.GetNodeByID(nodes.segmentations[k]).GetSegmentation().ContainsRepresentation("Closed surface")
            assert nodes.node(s, "dose", k) is dose
        assert sequences(s)["dose"].GetNumberOfDataNodes() == 2
    finally:
        mrml.release_scene(s)
