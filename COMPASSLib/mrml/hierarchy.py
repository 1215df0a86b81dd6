"""The subject hierarchy COMPASS builds: Patient (subject) / Course (study) / Fraction k (folder), and
putting data nodes under an item. Slicer's DICOM and SlicerRT modules read a study's attributes for what
lies below it (slicerrt.py), so the items are real subject and study levels, not plain folders."""
from __future__ import annotations

from COMPASSLib.mrml.scene import _slicer

COURSE = "Course"


def subject_hierarchy(scene):
    return _slicer().vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def place(scene, node, parent_item) -> int:
    """Put a data node under a subject hierarchy item (creating its item where the app did not);
    returns the node's item."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent_item)
        return item
    return sh.CreateItem(parent_item, node)


def child_item(sh, parent, name: str, create) -> int:
    """The child of `parent` named `name`, made with `create(parent, name)` when there is none."""
    item = sh.GetItemChildWithName(parent, name)
    return item if item else create(parent, name)


def patient_item(scene, patient_id: str) -> int:
    """The patient's subject item (found by name, so a patient loaded twice shares it)."""
    sh = subject_hierarchy(scene)
    return child_item(sh, sh.GetSceneItemID(), str(patient_id), sh.CreateSubjectItem)


def course_item(scene, patient: int) -> int:
    """The treatment course under a patient: a study item, where SlicerRT looks for the dose unit."""
    sh = subject_hierarchy(scene)
    return child_item(sh, patient, COURSE, sh.CreateStudyItem)


def study_item(scene, patient: int, name: str) -> int:
    sh = subject_hierarchy(scene)
    return child_item(sh, patient, name, sh.CreateStudyItem)


def fraction_item(scene, course: int, fraction) -> int:
    sh = subject_hierarchy(scene)
    return child_item(sh, course, f"Fraction {fraction}", sh.CreateFolderItem)
