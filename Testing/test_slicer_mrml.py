"""Headless tests of the MRML bridge on the real `slicer-core` wheel (real vtkMRMLScene and nodes).

Geometry is checked against DICOM tags written here with pydicom and read by SimpleITK, the scene
content against COMPASSLib's own ingest of the synthetic cohort, the table against a risk.csv, and the
saved .mrb by reading it back into a fresh scene.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest

import slicer  # slicer-core is a pinned test dependency: fail, never skip
import SimpleITK as sitk

from COMPASSLib import mrml  # noqa: E402
from COMPASSLib.errors import InputError  # noqa: E402

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture
def scene():
    """A fresh real scene, made `slicer.mrmlScene`, with the Segmentations/Sequences/Colors logics."""
    s = mrml.new_scene()
    assert slicer.mrmlScene is s
    yield s
    mrml.release_scene(s)


# --- real DICOM written here -----------------------------------------------------------------------
def write_ct_series(folder: Path, iop, ipp0, pixel_spacing, slice_step, shape=(4, 6, 5), seed=0):
    """A CT series (pydicom) with the given ImageOrientationPatient, first ImagePositionPatient,
    PixelSpacing (row, column spacing) and slice step vector (mm, LPS). Returns (files, voxels zyx)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    voxels = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for z in range(shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"CT{z:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "GEOM01", "Geometry^Test"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = datetime.date(2026, 1, 5).strftime("%Y%m%d")
        ds.InstanceNumber = z + 1
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in np.asarray(ipp0) + z * np.asarray(slice_step)]
        ds.PixelSpacing = [f"{v:.4f}" for v in pixel_spacing]
        ds.SliceThickness = f"{np.linalg.norm(slice_step):.4f}"
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = voxels[z].tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files, voxels


def dicom_ijk_to_ras(files) -> np.ndarray:
    """IJK->RAS straight from the DICOM tags (pydicom): LPS axes from IOP/PixelSpacing/IPP, then RAS."""
    import pydicom

    first, last = (pydicom.dcmread(f, stop_before_pixels=True) for f in (files[0], files[-1]))
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    dr, dc = (float(v) for v in first.PixelSpacing)       # spacing between rows, between columns
    p0 = np.array([float(v) for v in first.ImagePositionPatient])
    pn = np.array([float(v) for v in last.ImagePositionPatient])
    m = np.eye(4)
    m[:3, 0] = LPS_TO_RAS @ (row_dir * dc)                # i runs along a row (column index)
    m[:3, 1] = LPS_TO_RAS @ (col_dir * dr)
    m[:3, 2] = LPS_TO_RAS @ ((pn - p0) / (len(files) - 1))
    m[:3, 3] = LPS_TO_RAS @ p0
    return m


@pytest.mark.parametrize("iop, step", [
    ((1, 0, 0, 0, 1, 0), (0, 0, 2.5)),                   # axial, head-first supine
    ((0, 1, 0, -1, 0, 0), (0, 0, -3.0)),                 # rotated in plane, slices stored feet to head reversed
])
def test_volume_geometry_in_ras_equals_dicom_geometry(tmp_path, scene, iop, step):
    files, voxels = write_ct_series(tmp_path / "ct", iop, ipp0=(-101.3, 57.25, -312.5),
                                    pixel_spacing=(0.9765, 1.25), slice_step=step)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    image = reader.Execute()
    node = mrml.add_volume(image, "CT", scene)

    expected = dicom_ijk_to_ras(files)
    got = mrml.node_ijk_to_ras(node)
    # SimpleITK orders slices along the normal; put the DICOM reference in the same order.
    if np.dot(got[:3, 2], expected[:3, 2]) < 0:
        expected[:3, 3] = expected[:3, 3] + expected[:3, 2] * (len(files) - 1)
        expected[:3, 2] *= -1
        voxels = voxels[::-1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(node.GetSpacing(), np.linalg.norm(expected[:3, :3], axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(node.GetOrigin(), expected[:3, 3], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), voxels)


def test_geometry_flip_is_lps_to_ras(scene):
    """A point's RAS position from the node equals the LPS physical point of SimpleITK with x, y negated."""
    image = sitk.Image(7, 5, 3, sitk.sitkFloat32)
    image.SetOrigin((12.5, -40.0, 7.0))
    image.SetSpacing((1.5, 2.0, 3.25))
    image.SetDirection((0, -1, 0, 1, 0, 0, 0, 0, 1))
    node = mrml.add_volume(image, "probe", scene)
    m = mrml.node_ijk_to_ras(node)
    for ijk in [(0, 0, 0), (6, 4, 2), (3, 1, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = (m @ np.array([*ijk, 1.0]))[:3]
        np.testing.assert_allclose(ras, lps * [-1, -1, 1], atol=1e-9)


def test_segment_voxels_equal_mask(scene):
    rng = np.random.default_rng(3)
    ref = sitk.GetImageFromArray(rng.normal(size=(5, 9, 8)).astype(np.float32))
    ref.SetOrigin((3.0, -7.0, 11.0))
    ref.SetSpacing((1.2, 0.8, 2.0))
    masks = {}
    for organ, lo in (("Heart", 1), ("SpinalCord", 4)):
        m = np.zeros((5, 9, 8), np.uint8)
        m[lo:lo + 2, 2:7, lo:lo + 3] = 1
        m[0, 0, 0] = 1   # a corner voxel: the segment must not be cropped away
        mask = sitk.GetImageFromArray(m)
        mask.CopyInformation(ref)
        masks[organ] = mask
    vol = mrml.add_volume(ref, "ref", scene)
    seg = mrml.add_segmentation(masks, "organs", vol, scene)
    assert seg.GetSegmentation().GetNumberOfSegments() == 2
    for organ, mask in masks.items():
        np.testing.assert_array_equal(mrml.segment_array(seg, organ, vol), sitk.GetArrayFromImage(mask))
        segment = seg.GetSegmentation().GetSegment(seg.GetSegmentation().GetSegmentIdBySegmentName(organ))
        assert tuple(round(c, 4) for c in segment.GetColor()) == tuple(round(c, 4) for c in mrml.ORGAN_COLOURS[organ])
    with pytest.raises(InputError, match="Lungs"):
        mrml.segment_array(seg, "Lungs", vol)


# --- risk table -----------------------------------------------------------------------------------
def contract_risk(patients=("P1", "P2"), organs=("Heart", "Esophagus", "SpinalCord"), fractions=3):
    """A risk.csv in `compass run`'s format, values made up here."""
    import pandas as pd

    rng = np.random.default_rng(5)
    rows = []
    for p in patients:
        for o in organs:
            r = np.sort(rng.uniform(0.02, 0.95, fractions))
            for k in range(fractions):
                rows.append({"patient": p, "organ": o, "fraction": k + 1, "risk": r[k],
                             "ci_low": max(r[k] - 0.1, 0), "ci_high": min(r[k] + 0.1, 1),
                             "warning": int(r[k] > 0.5)})
    return pd.DataFrame(rows)


def table_frame(table):
    """A table node's content read back through VTK (not through the bridge)."""
    vt = table.GetTable()
    out = {}
    for c in range(vt.GetNumberOfColumns()):
        col = vt.GetColumn(c)
        out[col.GetName()] = [col.GetValue(i) for i in range(col.GetNumberOfValues())]
    return out


def test_risk_table_equals_risk_csv(tmp_path, scene):
    df = contract_risk()
    path = tmp_path / "risk.csv"
    df.to_csv(path, index=False)
    table = mrml.add_risk_table(path, "P2", scene)
    got = table_frame(table)
    expected = df[df.patient == "P2"].sort_values(["organ", "fraction"])
    assert list(got) == list(mrml.RISK_COLUMNS)
    assert got["organ"] == expected["organ"].tolist()
    assert got["fraction"] == expected["fraction"].tolist()
    np.testing.assert_array_equal(got["risk"], expected["risk"].to_numpy())   # exact: same doubles
    np.testing.assert_array_equal(got["ci_low"], expected["ci_low"].to_numpy())
    np.testing.assert_array_equal(got["warning"], expected["warning"].to_numpy())


def test_risk_plot_has_series_per_organ_and_onset(scene):
    df = contract_risk()
    chart = mrml.add_risk_plot(df, "P1", {"Heart": 2}, scene)
    names = [chart.GetNthPlotSeriesNode(i).GetName() for i in range(chart.GetNumberOfPlotSeriesNodes())]
    for organ in ("Heart", "Esophagus", "SpinalCord"):
        assert f"P1 {organ} risk" in names
    assert "P1 Heart onset" in names
    onset = scene.GetFirstNodeByName("P1 Heart onset")
    x = slicer.util.arrayFromTableColumn(onset.GetTableNode(), onset.GetXColumnName())
    assert x.tolist() == [2.0]
    risk = next(chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())
                if chart.GetNthPlotSeriesNode(i).GetName() == "P1 Heart risk")
    y = slicer.util.arrayFromTableColumn(risk.GetTableNode(), risk.GetYColumnName())
    expected = df[(df.patient == "P1") & (df.organ == "Heart")].sort_values("fraction")["risk"].to_numpy()
    np.testing.assert_array_equal(y, expected)


def test_bad_risk_csv_names_the_file(tmp_path, scene):
    path = tmp_path / "risk.csv"
    contract_risk().drop(columns=["ci_high"]).to_csv(path, index=False)
    with pytest.raises(InputError) as e:
        mrml.add_risk_table(path, "P1", scene)
    assert "ci_high" in str(e.value) and str(path) in str(e.value)
    contract_risk().to_csv(path, index=False)
    with pytest.raises(InputError, match="no rows for patient"):
        mrml.add_risk_table(path, "NOBODY", scene)


def test_texture_overlay_colour_table_and_legend(scene):
    ref = sitk.Image(6, 5, 4, sitk.sitkFloat32)
    ref.SetSpacing((2.0, 2.0, 3.0))
    values = np.zeros((4, 5, 6), np.float32)
    values[1:3, 1:4, 1:5] = np.linspace(1, 9, 24).reshape(2, 3, 4)
    values[1, 1, 1] = np.nan      # ROI voxel without GLCM pairs
    background = mrml.add_volume(ref, "CT", scene)
    node = mrml.add_texture_overlay(values, "glcm_Contrast F3", background, scene, reference=ref)
    shown = slicer.util.arrayFromVolume(node)
    assert shown[1, 1, 1] == 0 and shown[2, 3, 4] == pytest.approx(9.0)
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() == "COMPASS texture"
    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(node)
    assert legend is not None and legend.GetTitleText() == "glcm_Contrast F3"
    with pytest.raises(InputError, match="shape"):
        mrml.add_texture_overlay(values[:2], "bad", background, scene, reference=ref)


def test_cancel_stops_loading(scene):
    image = sitk.Image(3, 3, 3, sitk.sitkFloat32)

    class F:
        ct, pet, dose, masks, reference = image, None, image, {}, image

    seen = []

    def progress(value, message):
        seen.append(value)
        return len(seen) < 2     # stop at the second step

    with pytest.raises(mrml.Cancelled):
        mrml.add_fraction_series("P9", [(1, F), (2, F), (3, F)], scene, progress)
    assert len(seen) == 2


# --- a synthetic patient, end to end -----------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort_json(small_cohort):
    return small_cohort


@pytest.fixture(scope="module")
def loaded(cohort_json, tmp_path_factory, request):
    """One synthetic patient loaded by the logic, with a contract risk.csv; and its saved .mrb."""
    from COMPASSLib.cohort import Cohort

    import pandas as pd

    cohort = Cohort.load(cohort_json)
    pid = cohort.patient_ids[0]
    organs = cohort.patient(pid).canonical_organs
    n = len(cohort.patient(pid).fractions)
    try:
        # `compass run`'s own risk.csv when the suite provides a run on small_cohort (a session
        # fixture `compass_run_out` in conftest.py), else one in the same format written here.
        risk_csv = Path(request.getfixturevalue("compass_run_out")) / "risk.csv"
    except pytest.FixtureLookupError:
        risk_csv = tmp_path_factory.mktemp("risk") / "risk.csv"
        contract_risk(patients=cohort.patient_ids, organs=organs, fractions=n).to_csv(risk_csv, index=False)
    risk = pd.read_csv(risk_csv, dtype={"patient": str, "organ": str})
    s = mrml.new_scene()
    steps = []
    nodes = mrml.load_patient(cohort, pid, s, risk=risk_csv, progress=lambda v, m: steps.append(v))
    mrb = mrml.save_scene(tmp_path_factory.mktemp("mrb") / f"{pid}.mrb", s)
    yield {"cohort": cohort, "pid": pid, "scene": s, "nodes": nodes, "risk": risk, "mrb": mrb, "steps": steps}
    mrml.release_scene(s)   # its logics would otherwise outlive the module (test_slicer_batch counts them)


def test_loaded_patient_scene_holds_expected_nodes(loaded):
    from COMPASSLib import ingest

    s, nodes, pid, cohort = loaded["scene"], loaded["nodes"], loaded["pid"], loaded["cohort"]
    fractions = [f.index for f in cohort.patient(pid).fractions]
    assert nodes.fractions == fractions
    first = ingest.load_fraction(cohort, pid, fractions[0])
    modalities = [m for m in ("ct", "pet", "dose") if getattr(first, m) is not None] + ["bed", "eqd2"]
    for m in modalities:
        for k in fractions:
            node = nodes.node(s, m, k)   # the Sequence's item: fraction nodes are not kept by default
            assert node is not None and node.IsA("vtkMRMLScalarVolumeNode"), (m, k)
        seq = s.GetNodeByID(nodes.sequences[m])
        assert seq.IsA("vtkMRMLSequenceNode") and seq.GetNumberOfDataNodes() == len(fractions)
        assert [seq.GetNthIndexValue(i) for i in range(len(fractions))] == [str(k) for k in fractions]
        assert s.GetNodeByID(nodes.proxies[m]).IsA("vtkMRMLScalarVolumeNode")
    assert nodes.volumes == {} and nodes.segmentations == {}
    browser = s.GetNodeByID(nodes.browser)
    assert browser.IsA("vtkMRMLSequenceBrowserNode")
    assert browser.GetNumberOfSynchronizedSequenceNodes(True) == len(nodes.sequences)
    assert s.GetNodeByID(nodes.sequences["segmentation"]).GetNumberOfDataNodes() == len(fractions)
    seg = nodes.node(s, "segmentation", fractions[0])
    assert sorted(seg.GetSegmentation().GetSegmentIDs()) == sorted(first.masks)
    assert s.GetNodeByID(nodes.risk_table).IsA("vtkMRMLTableNode")
    chart = s.GetNodeByID(nodes.risk_chart)
    assert chart.IsA("vtkMRMLPlotChartNode") and chart.GetNumberOfPlotSeriesNodes() >= len(first.masks)
    # subject hierarchy: patient / course (a study) / the sequences, the browser and the proxies
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(s)
    for node_id in (nodes.proxies["ct"], nodes.sequences["ct"], nodes.browser):
        chain = []
        item = sh.GetItemParent(sh.GetItemByDataNode(s.GetNodeByID(node_id)))
        while item and item != sh.GetSceneItemID():
            chain.append(sh.GetItemName(item))
            item = sh.GetItemParent(item)
        assert chain == ["Course", pid], node_id
    assert sh.GetItemLevel(sh.GetItemByName(pid)) == "Patient"
    assert sh.GetItemLevel(sh.GetItemByName("Course")) == "Study"
    assert loaded["steps"] == sorted(loaded["steps"]) and loaded["steps"][-1] == 1.0


def test_loaded_volumes_and_segments_equal_the_library(loaded):
    from COMPASSLib import ingest

    s, nodes, pid, cohort = loaded["scene"], loaded["nodes"], loaded["pid"], loaded["cohort"]
    k = nodes.fractions[-1]
    images = ingest.load_fraction(cohort, pid, k)
    ct = nodes.node(s, "ct", k)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct), sitk.GetArrayFromImage(images.ct))
    np.testing.assert_allclose(mrml.node_ijk_to_ras(ct), mrml.ijk_to_ras(images.ct), rtol=0, atol=0)
    seg = nodes.shown_node(s, "segmentation", k)   # the proxy, the browser at fraction k
    ct = nodes.shown_node(s, "ct", k)
    for organ, mask in images.masks.items():
        np.testing.assert_array_equal(mrml.segment_array(seg, organ, ct), sitk.GetArrayFromImage(mask), organ)
    # cumulative BED after the last fraction: sum of d(1 + d/(a/b)) per voxel, a/b written out here from
    # Resources/organs.yaml: each organ's own inside it (the smallest where organs overlap), 3 Gy elsewhere
    # (BODY and outside); test_bed_everywhere.py checks the same rule on hand-made overlaps
    all_images = [ingest.load_fraction(cohort, pid, j) for j in nodes.fractions]
    table_ab = {"SpinalCord": 2.0, "Heart": 3.0, "Esophagus": 10.0, "Lungs": 3.0, "Lung_L": 3.0, "Lung_R": 3.0,
                "GTV": 10.0}
    shape = sitk.GetArrayFromImage(all_images[0].dose).shape
    organ_ab = np.full(shape, np.inf)
    for organ, mask in all_images[0].masks.items():
        if organ in table_ab:
            inside = sitk.GetArrayFromImage(mask) > 0
            organ_ab[inside] = np.minimum(organ_ab[inside], table_ab[organ])
    ab = np.where(np.isfinite(organ_ab), organ_ab, 3.0)
    assert (ab == 10.0).any(), "the esophagus (alpha/beta 10) must show in the scene's BED"
    expected = sum(d * (1 + d / ab) for d in (sitk.GetArrayFromImage(f.dose).astype(float) for f in all_images))
    bed = slicer.util.arrayFromVolume(nodes.node(s, "bed", k))
    np.testing.assert_allclose(bed, expected, rtol=1e-6, atol=1e-6)


def test_loaded_table_equals_risk_csv(loaded):
    got = table_frame(loaded["scene"].GetNodeByID(loaded["nodes"].risk_table))
    risk = loaded["risk"]
    expected = risk[risk.patient == loaded["pid"]].sort_values(["organ", "fraction"])
    assert got["organ"] == expected["organ"].tolist()
    np.testing.assert_array_equal(got["risk"], expected["risk"].to_numpy())
    np.testing.assert_array_equal(got["ci_high"], expected["ci_high"].to_numpy())
    np.testing.assert_array_equal(got["warning"], expected["warning"].astype(int).to_numpy())


def test_saved_mrb_reads_back_with_the_same_nodes(loaded):
    s = loaded["scene"]
    kinds = ("vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLSequenceNode",
             "vtkMRMLSequenceBrowserNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode", "vtkMRMLPlotSeriesNode",
             "vtkMRMLTextNode")
    before = {k: sorted(n.GetName() for n in mrml.nodes_by_class(s, k)) for k in kinds}
    back = mrml.load_scene(loaded["mrb"])
    try:
        _compare_read_back(loaded, back, kinds, before)
    finally:
        mrml.release_scene(back)


def _compare_read_back(loaded, back, kinds, before):
    s = loaded["scene"]
    after = {k: sorted(n.GetName() for n in mrml.nodes_by_class(back, k)) for k in kinds}
    assert after == before
    nodes = loaded["nodes"]
    seq_name = s.GetNodeByID(nodes.sequences["dose"]).GetName()
    back_seq = back.GetFirstNodeByName(seq_name)
    for k in nodes.fractions:   # every fraction's dose, from the Sequence read back
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(back_seq.GetDataNodeAtValue(str(k))),
                                      slicer.util.arrayFromVolume(nodes.node(s, "dose", k)))
    import json

    prov = json.loads(back.GetFirstNodeByName(f"{loaded['pid']} provenance").GetText())
    assert prov["settings"]["patient"] == loaded["pid"] and "SimpleITK" in prov["versions"]
    assert len(prov["inputs"]["cohort.json"]) == 64 and len(prov["inputs"]["risk.csv"]) == 64
    table_name = s.GetNodeByID(loaded["nodes"].risk_table).GetName()
    got = table_frame(back.GetFirstNodeByName(table_name))
    # Slicer's table storage (.tsv inside the bundle) writes 6 significant digits; risk.csv stays the
    # full-precision record.
    np.testing.assert_allclose([float(v) for v in got["risk"]],
                               table_frame(s.GetFirstNodeByName(table_name))["risk"], rtol=5e-6, atol=0)


def test_missing_mrb_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        mrml.load_scene(tmp_path / "nothing.mrb")
    with pytest.raises(InputError, match=r"\.mrb"):
        mrml.save_scene(tmp_path / "scene.mrml")


def test_volume_to_image_inverts_add_volume(scene):
    image = sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    image.SetOrigin((1.5, -2.0, 30.0))
    image.SetSpacing((0.7, 1.1, 2.5))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    back = mrml.volume_to_image(mrml.add_volume(image, "x", scene))
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_texture_maps_of_loaded_patient_equal_the_library(loaded):
    """The overlay shows what COMPASSLib.features.texture_maps computes on the cumulative BED."""
    from COMPASSLib.features import texture_maps as tm
    s, nodes = loaded["scene"], loaded["nodes"]
    k = nodes.fractions[-1]
    seg = nodes.node(s, "segmentation", k)
    organ = "SpinalCord" if seg.GetSegmentation().GetSegmentIdBySegmentName("SpinalCord") else \
        seg.GetSegmentation().GetNthSegmentID(0)
    overlays = mrml.add_texture_maps(nodes, organ, k, ["firstorder:Mean"], radius=1, bin_width_gy=1.0, scene=s)
    assert len(overlays) == 1
    bed = slicer.util.arrayFromVolume(nodes.node(s, "bed", k)).astype(np.float64)
    mask = mrml.segment_array(nodes.shown_node(s, "segmentation", k), organ, nodes.shown_node(s, "bed", k))
    expected = tm.texture_maps(bed, mask, ["firstorder:Mean"], radius=1, bin_width=1.0)["firstorder:Mean"]
    np.testing.assert_allclose(slicer.util.arrayFromVolume(overlays[0]), np.nan_to_num(expected).astype(np.float32),
                               rtol=1e-6, atol=1e-6)


def test_release_scene_detaches_logics():
    s = mrml.new_scene()
    mrml.add_volume(sitk.Image(4, 4, 4, sitk.sitkFloat32), "v", s)
    before = len(mrml.scene._LOGICS)
    mrml.release_scene(s)
    assert len(mrml.scene._LOGICS) == before - 1
    assert s.GetNodesByClass("vtkMRMLScalarVolumeNode").GetNumberOfItems() == 0
