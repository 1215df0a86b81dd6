"""Data a user loaded through Slicer's DICOM module (SlicerRT's importer for RTDOSE and RTSTRUCT) as a
COMPASS cohort: the fraction series are found by study in the subject hierarchy and written down as a
cohort manifest, so every number after that (BED, features, risk) comes from the same code as
`compass run` / `compass update` on files.

How the scene is read (what Slicer's DICOM plugins leave behind):
- a Patient item (its name, or DICOM.PatientID) holds Study items; each study is one scan session;
- in a study: CT and PET volumes (series items with DICOM.Modality CT / PT), the dose volume (SlicerRT's
  `DicomRtImport.DoseVolume` = 1, or modality RTDOSE) and the structures (a segmentation node);
- studies with a dose are the fractions, in order of DICOM.StudyDate and StudyTime (then name); the
  earliest study without a dose is the planning session (its CT is the reference grid, its structures
  serve fractions without their own).
Where a node came from DICOM files (the series item's DICOMInstanceUID, or the node's
`DICOM.instanceUIDs`) and those files can be found (Slicer's DICOM database, or `dicom_files`), the
manifest lists the files themselves: COMPASS's readers then give exactly what `compass` gives (PET in
SUVbw from its headers, RTSTRUCT rasterised by COMPASS's rules). A node without source files (edited,
or loaded from NRRD) is written as NRRD (volumes) or .seg.nrrd (segmentations, on the reference CT's
grid) into the output folder; a PET volume without DICOM source files must already be in SUV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from COMPASSLib.errors import InputError
from COMPASSLib.mrml.coordinates import volume_to_image
from COMPASSLib.mrml.hierarchy import subject_hierarchy
from COMPASSLib.mrml.nodes import segment_array
from COMPASSLib.mrml.scene import _slicer, get_scene
from COMPASSLib.mrml.slicerrt import DOSE_VOLUME_ATTRIBUTE, is_dose_volume

MODALITY_OF_ROLE = {"ct": ("CT",), "pet": ("PT",), "dose": ("RTDOSE",), "rtstruct": ("RTSTRUCT", "SEG")}


@dataclass
class SceneStudy:
    """One study of a patient in the scene: its date and the nodes found under it, by role."""
    item: int
    name: str
    date: str = ""
    time: str = ""
    nodes: dict = field(default_factory=dict)   # role -> node (ct, pet, dose, rtstruct)


def _constants():
    return _slicer().vtkMRMLSubjectHierarchyConstants


def scene_patients(scene=None) -> dict:
    """Patient items of the scene: {patient id (DICOM.PatientID, else the item's name): item}."""
    scene = get_scene(scene)
    sh, c = subject_hierarchy(scene), _constants()
    out = {}
    children = _children(sh, sh.GetSceneItemID(), recursive=True)
    for item in children:
        if sh.GetItemLevel(item) == c.GetDICOMLevelPatient():
            pid = sh.GetItemAttribute(item, c.GetDICOMPatientIDAttributeName()) or sh.GetItemName(item)
            out[pid] = item
    return out


def _children(sh, item, recursive=False) -> list:
    import vtk

    ids = vtk.vtkIdList()
    sh.GetItemChildren(item, ids, recursive)
    return [ids.GetId(i) for i in range(ids.GetNumberOfIds())]


def _role(sh, item, node) -> str | None:
    """What a data node is for COMPASS: ct, pet, dose, rtstruct, or None."""
    modality = sh.GetItemAttribute(item, _constants().GetDICOMSeriesModalityAttributeName()).upper()
    if node.IsA("vtkMRMLSegmentationNode"):
        return "rtstruct"
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        return None
    if is_dose_volume(node) or modality in MODALITY_OF_ROLE["dose"]:
        return "dose"
    for role in ("ct", "pet"):
        if modality in MODALITY_OF_ROLE[role]:
            return role
    return None


def patient_studies(patient_id: str, scene=None) -> list:
    """The studies of a patient, with the nodes found in each, in time order."""
    scene = get_scene(scene)
    patients = scene_patients(scene)
    if patient_id not in patients:
        raise InputError(f"no patient {patient_id!r} in the scene's subject hierarchy (patients: "
                         f"{', '.join(patients) or 'none'}); load the series through the DICOM module")
    sh, c = subject_hierarchy(scene), _constants()
    studies = []
    for item in _children(sh, patients[patient_id]):
        if sh.GetItemLevel(item) != c.GetDICOMLevelStudy():
            continue
        study = SceneStudy(item, sh.GetItemName(item), sh.GetItemAttribute(item, c.GetDICOMStudyDateAttributeName()),
                           sh.GetItemAttribute(item, c.GetDICOMStudyTimeAttributeName()))
        for child in [item, *_children(sh, item, recursive=True)]:
            node = sh.GetItemDataNode(child)
            role = _role(sh, child, node) if node is not None else None
            if role is None:
                continue
            if role in study.nodes:
                raise InputError(f"study {study.name!r} of patient {patient_id} holds two {role} series "
                                 f"({study.nodes[role].GetName()!r}, {node.GetName()!r}): keep one per study")
            study.nodes[role] = node
        studies.append(study)
    return sorted(studies, key=lambda s: (s.date, s.time, s.name))


def _instance_uids(scene, node) -> list:
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    uids = sh.GetItemUID(item, _constants().GetDICOMInstanceUIDName()) if item else ""
    return (uids or node.GetAttribute("DICOM.instanceUIDs") or "").split()


def _application_dicom_files():
    """uid -> file through Slicer's DICOM database (the application only), else None."""
    database = getattr(_slicer(), "dicomDatabase", None)
    if database is None:
        return None
    return lambda uid: database.fileForInstance(uid) or None


def _source_files(scene, node, dicom_files) -> list | None:
    uids = _instance_uids(scene, node)
    if not uids or dicom_files is None:
        return None
    files = [dicom_files(uid) for uid in uids]
    if not all(files) or not all(Path(f).is_file() for f in files):
        return None
    return sorted({str(Path(f).resolve()) for f in files})


def _export(scene, node, role, folder: Path, reference_node) -> str:
    """A node without source files, written where the manifest can list it."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    from COMPASSLib.atomic import atomic_path, safe_filename

    stem = safe_filename(node.GetName())
    if role != "rtstruct":
        path = folder / f"{stem}.nrrd"
        with atomic_path(path) as tmp:
            sitk.WriteImage(volume_to_image(node), str(tmp), True)
        return str(path)
    if reference_node is None:
        raise InputError(f"segmentation {node.GetName()!r} has no DICOM source files and no CT to lie on")
    import numpy as np

    names = list(node.GetSegmentation().GetSegmentIDs())
    names = [node.GetSegmentation().GetSegment(s).GetName() for s in names]
    layers = np.stack([segment_array(node, n, reference_node) for n in names], axis=-1)
    grid = volume_to_image(reference_node)
    image = sitk.GetImageFromArray(layers.astype(np.uint8), isVector=True)
    image.CopyInformation(grid)
    for i, name in enumerate(names):   # Slicer's .seg.nrrd header: one layer per segment (they may overlap)
        for key, value in (("Name", name), ("ID", name), ("LabelValue", "1"), ("Layer", str(i))):
            image.SetMetaData(f"Segment{i}_{key}", value)
    path = folder / f"{stem}.seg.nrrd"
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)
    return str(path)


def _patient_entry(scene, patient_id, out: Path, dicom_files):
    """(the manifest's Patient, the studies found) for one patient of the scene."""
    from COMPASSLib.atomic import safe_filename
    from COMPASSLib.cohort import Fraction, Patient

    studies = patient_studies(patient_id, scene)
    fractions = [s for s in studies if "dose" in s.nodes]
    if not fractions:
        raise InputError(f"patient {patient_id}: no study in the scene holds a dose volume (SlicerRT marks "
                         f"RTDOSE volumes with {DOSE_VOLUME_ATTRIBUTE}); load the fractions' RTDOSE files")
    planning = next((s for s in studies if "dose" not in s.nodes and ("ct" in s.nodes or "rtstruct" in s.nodes)),
                    None)
    reference_ct = (planning or fractions[0]).nodes.get("ct") or next((s.nodes["ct"] for s in fractions
                                                                        if "ct" in s.nodes), None)
    exported = out / "scene_exports" / safe_filename(patient_id)

    def files_of(study, k):
        entry = {"index": k, "datetime": f"{study.date}T{study.time}" if study.date else None}
        for role in ("ct", "pet", "dose", "rtstruct"):
            node = study.nodes.get(role)
            if node is None:
                entry[role] = []
                continue
            found = _source_files(scene, node, dicom_files)
            entry[role] = found if found is not None else [_export(scene, node, role, exported / f"study{k}",
                                                                   study.nodes.get("ct") or reference_ct)]
        return entry

    patient = Patient(id=str(patient_id), fractions=[Fraction(**files_of(s, k)) for k, s in enumerate(fractions, 1)],
                      planning=Fraction(**files_of(planning, 0)) if planning is not None else None)
    return patient, studies


def scene_cohort(patients, out_dir, scene=None, dicom_files=None, outcomes=None) -> Path:
    """Write OUT/cohort.json for patients of the scene (see the module docstring); returns its path.
    `patients`: a patient id, a list of them, or None for every patient of the scene's subject hierarchy;
    `dicom_files`: SOP instance UID -> file path (default: Slicer's DICOM database where it exists);
    `outcomes`: an outcomes.csv to refer to (for training or checking; scoring needs none)."""
    from COMPASSLib.cohort import Cohort

    scene = get_scene(scene)
    out = Path(out_dir)
    dicom_files = dicom_files if dicom_files is not None else _application_dicom_files()
    ids = list(scene_patients(scene)) if patients is None else [patients] if isinstance(patients, str) else list(patients)
    if not ids:
        raise InputError("the scene's subject hierarchy holds no patient: load the fractions through the DICOM module")
    entries = [_patient_entry(scene, pid, out, dicom_files) for pid in ids]
    cohort = Cohort([p for p, _ in entries], root=out,
                    outcomes_file=str(Path(outcomes).resolve()) if outcomes else "outcomes.csv",
                    extra={"source": "3D Slicer scene (DICOM module)",
                           "studies": {p.id: [{"name": s.name, "date": s.date, "time": s.time,
                                               "nodes": {r: n.GetName() for r, n in s.nodes.items()}}
                                              for s in studies] for p, studies in entries}})
    return cohort.save(out / "cohort.json")
