"""Data loaded through Slicer's DICOM module, used by COMPASS (mrml.scene_cohort), on the real slicer-core MRML.

The scene is built the way Slicer's DICOM plugins and SlicerRT's importer leave it (Patient / Study /
series items with DICOM.Modality, StudyDate/Time, the series' SOP instance UIDs as the item's
DICOMInstanceUID, `DicomRtImport.DoseVolume` = 1 on the dose volume, the RTSTRUCT as a segmentation
named by ROI). The importer itself is not run: SlicerRT is a compiled extension, not installable here;
the volumes put into the scene are read from the same DICOM files by COMPASS's readers and the
segmentation is rasterised from the RTSTRUCT. What is tested is the way back: finding a patient's
fractions by study, and getting from them the same BED, features and risk as `compass` gets from the
files: with the DICOM database's file lookup (exact), and from the nodes' own voxels where the files
are not known (exported to NRRD/.seg.nrrd).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

import slicer  # noqa: F401  (slicer-core: a pinned test dependency)

SETTINGS = {"profile": "fast", "organs": ["Heart", "Esophagus", "SpinalCord"]}


def _dicom_index(root: Path) -> dict:
    """SOP instance UID -> file, as Slicer's DICOM database answers fileForInstance."""
    import pydicom

    index = {}
    for path in root.rglob("*"):
        if path.is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:   # noqa: BLE001 - not DICOM (cohort.json, csv)
                continue
            index[str(ds.SOPInstanceUID)] = str(path)
    return index


def _series_item(scene, study_item, node, modality, uids):
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = sh.CreateItem(study_item, node)
    sh.SetItemAttribute(item, "DICOM.Modality", modality)
    sh.SetItemUID(item, "DICOMInstanceUID", " ".join(uids))
    return item


def _load_like_the_dicom_module(scene, cohort, pid):
    """Patient/Study/series items and nodes as the DICOM module and SlicerRT make them."""
    import pydicom

    from COMPASSLib import io, mrml

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = cohort.patient(pid)
    patient_item = sh.CreateSubjectItem(sh.GetSceneItemID(), f"Patient {pid}")
    sessions = ([("plan", patient.planning)] if patient.planning else []) + [(f"F{f.index}", f) for f in patient.fractions]
    for name, frac in reversed(sessions):   # the DICOM module's order is no guide: COMPASS sorts by date
        first = cohort.path((frac.ct or frac.dose or frac.rtstruct)[0])
        header = pydicom.dcmread(first, stop_before_pixels=True)
        sh.SetItemAttribute(patient_item, "DICOM.PatientID", str(header.PatientID))
        study = sh.CreateStudyItem(patient_item, f"{name} {header.StudyDate}")
        sh.SetItemAttribute(study, "DICOM.StudyDate", str(header.StudyDate))
        sh.SetItemAttribute(study, "DICOM.StudyTime", str(header.StudyTime))
        ct = None
        for role, modality in (("ct", "CT"), ("pet", "PT"), ("dose", "RTDOSE")):
            files = cohort.paths(frac.files(role))
            if not files:
                continue
            image = io.read_volume(files, role)
            node = mrml.add_volume(image, f"{name} {modality}", scene)
            if role == "dose":
                node.SetAttribute("DicomRtImport.DoseVolume", "1")
            ct = node if role == "ct" else ct
            _series_item(scene, study, node, modality,
                         [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files])
        if frac.rtstruct:
            rs = cohort.paths(frac.rtstruct)[0]
            grid = mrml.volume_to_image(ct) if ct is not None else io.read_volume(cohort.paths(patient.fractions[0].ct), "ct")
            masks = io.read_structures([rs], grid)
            seg = mrml.add_segmentation(masks, f"{name} RTSTRUCT", ct, scene)
            _series_item(scene, study, seg, "RTSTRUCT", [str(pydicom.dcmread(rs, stop_before_pixels=True).SOPInstanceUID)])
    return header.PatientID


@pytest.fixture(scope="module")
def both_ways(small_cohort, tmp_path_factory):
    from COMPASSLib import mrml
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.twin.model import CompassTwin

    tmp = tmp_path_factory.mktemp("dicom_scene")
    cohort = Cohort.load(small_cohort)
    pid = cohort.patient_ids[0]
    settings = FeatureSettings(**SETTINGS)
    scene = mrml.new_scene()
    try:
        patient_id = _load_like_the_dicom_module(scene, cohort, pid)
        index = _dicom_index(Path(small_cohort).parent / pid)
        with_files = mrml.scene_cohort(patient_id, tmp / "with_files", scene, dicom_files=index.get,
                                       outcomes=cohort.path(cohort.outcomes_file))
        from_nodes = mrml.scene_cohort(patient_id, tmp / "from_nodes", scene, dicom_files=lambda uid: None)
        patients = mrml.scene_patients(scene)
    finally:
        mrml.release_scene(scene)
    files_table = extract_cohort(cohort.subset([pid]), settings)
    twin = CompassTwin(epochs=10, n_bootstrap=0, ig_steps=2).fit(extract_cohort(cohort, settings), cohort.outcomes())
    return {"pid": pid, "patient_id": patient_id, "patients": patients, "with_files": with_files,
            "from_nodes": from_nodes, "files": files_table, "settings": settings, "twin": twin, "cohort": cohort}


def _same_patient(table, pid):
    return table.assign(patient=pid)


def test_scene_patients_and_fraction_order(both_ways):
    from COMPASSLib.cohort import Cohort

    assert list(both_ways["patients"]) == [both_ways["patient_id"]]
    scene_cohort = Cohort.load(both_ways["with_files"])
    original = both_ways["cohort"].patient(both_ways["pid"])
    got = scene_cohort.patient(both_ways["patient_id"])
    assert [f.index for f in got.fractions] == [f.index for f in original.fractions]
    for mine, theirs in zip(got.fractions, original.fractions):   # studies sorted by date, not scene order
        assert [Path(p).resolve() for p in mine.dose] == [both_ways["cohort"].path(p).resolve() for p in theirs.dose]
    assert got.planning is not None and got.planning.ct


def test_dicom_module_scene_gives_the_same_features_and_risk_as_the_files(both_ways):
    from COMPASSLib.features.table import extract_cohort

    table = extract_cohort(both_ways["with_files"], both_ways["settings"])
    expected = both_ways["files"]
    pd.testing.assert_frame_equal(_same_patient(table, both_ways["pid"]), expected)
    twin = both_ways["twin"]
    risk_scene = twin.risk_trajectory(_same_patient(table, both_ways["pid"]), explain=False)
    risk_files = twin.risk_trajectory(expected, explain=False)
    pd.testing.assert_frame_equal(risk_scene, risk_files)


def test_nodes_without_source_files_give_the_same_bed_and_features(both_ways):
    from COMPASSLib.features.table import extract_cohort

    table = _same_patient(extract_cohort(both_ways["from_nodes"], both_ways["settings"]), both_ways["pid"])
    expected = both_ways["files"]
    assert list(table.columns) == list(expected.columns)
    bed = [c for c in expected.columns if c.startswith(("bed_", "dvh_"))]
    np.testing.assert_allclose(table[bed].to_numpy(float), expected[bed].to_numpy(float), rtol=1e-6, atol=1e-9)
    numeric = expected.select_dtypes("number").columns
    np.testing.assert_allclose(table[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-5,
                               atol=1e-6, equal_nan=True)
    # the exports are real files beside the manifest
    exported = list((Path(both_ways["from_nodes"]).parent / "scene_exports").rglob("*.nrrd"))
    assert any(p.name.endswith(".seg.nrrd") for p in exported) and len(exported) >= 4
    seg = sitk.ReadImage(str(next(p for p in exported if p.name.endswith(".seg.nrrd"))))
    assert seg.GetMetaData("Segment0_Name")


def test_a_patient_without_dose_is_a_clear_error(tmp_path):
    from COMPASSLib import mrml
    from COMPASSLib.errors import InputError

    scene = mrml.new_scene()
    try:
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "P9")
        sh.CreateStudyItem(patient, "CT only")
        with pytest.raises(InputError, match="no study in the scene holds a dose volume"):
            mrml.scene_cohort("P9", tmp_path, scene)
        with pytest.raises(InputError, match="no patient 'P0'"):
            mrml.scene_cohort("P0", tmp_path, scene)
    finally:
        mrml.release_scene(scene)
