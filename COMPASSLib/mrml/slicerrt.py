"""What SlicerRT reads to take a volume as a dose: the volume's attribute `DicomRtImport.DoseVolume`
and, on the subject-hierarchy study item above it, the dose unit's name and value (the scaling from
voxel values to the unit). SlicerRT's DVH, Isodose and Dose Accumulation modules list a volume as dose by
the attribute (vtkSlicerRtCommon::IsDoseVolumeNode) and find the unit with
GetAttributeFromItemAncestor(item, ..., "Study") / GetItemAncestorAtLevel(item, "Study"); its DICOM RT
import sets them so (SlicerRt/SlicerRT df6ef69c, SlicerRtCommon/vtkSlicerRtCommon.cxx:64-67,
DicomRtImportExport/Logic/vtkSlicerDicomRtImportExportModuleLogic.cxx:528-650). COMPASS volumes hold the
values in their unit (Gy), so the value is 1."""
from __future__ import annotations

from COMPASSLib.mrml.hierarchy import study_item, subject_hierarchy

DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"
DOSE_UNIT_VALUE_ATTRIBUTE = "DicomRtImport.DoseUnitValue"
STUDY_LEVEL = "Study"
GRAY = "GY"          # RTDOSE DoseUnits, as SlicerRT's import writes it
UNIT_VALUE = "1.0"   # voxels are already in the unit: no scaling


def mark_dose_volume(node) -> None:
    node.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")


def is_dose_volume(node) -> bool:
    """SlicerRT's test (vtkSlicerRtCommon::IsDoseVolumeNode): the attribute is set to 1."""
    return node.GetAttribute(DOSE_VOLUME_ATTRIBUTE) == "1"


def set_study_dose_unit(scene, study: int, unit: str | None = GRAY) -> None:
    """The unit SlicerRT reads for every dose volume under `study`; `unit` None: values without a unit
    (SlicerRT then shows the unit as unknown), still with value 1 (no scaling)."""
    sh = subject_hierarchy(scene)
    if unit:
        sh.SetItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE, unit)
    else:
        sh.RemoveItemAttribute(study, DOSE_UNIT_NAME_ATTRIBUTE)
    sh.SetItemAttribute(study, DOSE_UNIT_VALUE_ATTRIBUTE, UNIT_VALUE)


def unit_study(scene, patient: int, title: str, unit: str | None) -> int:
    """A study under the patient for dose-like volumes in `unit` (SlicerRT reads one unit per study, so
    maps in another unit than the course's Gy get their own): '<title> [unit]' or '<title> [no unit]'."""
    study = study_item(scene, patient, f"{title} [{unit or 'no unit'}]")
    set_study_dose_unit(scene, study, unit)
    return study


def dose_unit(scene, node) -> tuple:
    """(unit name, unit value) of a volume the way SlicerRT finds them: on the study among its
    subject-hierarchy ancestors; ('', '') when it has none."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        return "", ""
    return (sh.GetAttributeFromItemAncestor(item, DOSE_UNIT_NAME_ATTRIBUTE, STUDY_LEVEL),
            sh.GetAttributeFromItemAncestor(item, DOSE_UNIT_VALUE_ATTRIBUTE, STUDY_LEVEL))
