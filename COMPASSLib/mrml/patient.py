"""A patient in the scene: the fraction series (CT, PET, dose, organs per fraction) under Patient /
Course / Fraction k in the subject hierarchy with a Sequence per modality, the cumulative BED/EQD2 maps,
the risk table and chart, and a provenance node; `load_patient` does all of it from a cohort."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from COMPASSLib.mrml.nodes import ATTRIBUTE_PREFIX, _style_volume, add_segmentation, add_sequence, add_volume
from COMPASSLib.mrml.risk import add_risk_plot, add_risk_table
from COMPASSLib.mrml.scene import _slicer, get_scene, module_logics
from COMPASSLib.progress import report, scaled

MODALITIES = ("ct", "pet", "dose")
# How a modality is named in node names.
_MODALITY_NAMES = {"ct": "CT", "pet": "PET", "dose": "Dose", "bed": "BED", "eqd2": "EQD2"}


# --- subject hierarchy: patient / course / fraction ----------------------------------------------
def _sh(scene):
    return _slicer().vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def _place(scene, node, parent_item) -> None:
    """Put a data node under a subject hierarchy item (creating its item where the app did not)."""
    sh = _sh(scene)
    item = sh.GetItemByDataNode(node)
    if item:
        sh.SetItemParent(item, parent_item)
    else:
        sh.CreateItem(parent_item, node)


def _child(sh, parent, name, create):
    for_item = sh.GetItemChildWithName(parent, name)
    return for_item if for_item else create(parent, name)


@dataclass
class PatientNodes:
    """What `load_patient` put into the scene (node IDs, so the object survives scene edits)."""
    patient: str
    fractions: list = field(default_factory=list)                 # fraction indices, delivery order
    volumes: dict = field(default_factory=dict)                   # (modality, fraction) -> node ID
    segmentations: dict = field(default_factory=dict)             # fraction -> node ID
    sequences: dict = field(default_factory=dict)                 # modality -> sequence node ID
    browser: str | None = None                                    # sequence browser node ID
    sh_items: dict = field(default_factory=dict)                  # "patient", "course", fraction -> SH item
    risk_table: str | None = None                                 # table node ID (organ x fraction risk)
    risk_chart: str | None = None                                 # plot chart node ID

    def node(self, scene, modality, fraction):
        return scene.GetNodeByID(self.volumes[(modality, fraction)])


# --- fraction series -----------------------------------------------------------------------------
def add_fraction_series(patient_id: str, fractions, scene=None, progress=None,
                        keep_fraction_nodes: bool = True) -> PatientNodes:
    """Put a patient's fraction series into the scene.

    `fractions`: iterable of (fraction index, FractionImages) with `.ct`, `.pet`, `.dose` (SimpleITK,
    LPS, any may be None) and `.masks` (organ -> 0/1 mask). Makes one volume per modality and fraction
    and one segmentation per fraction under Patient / Course / Fraction k in the subject hierarchy, and
    a Sequence per modality (plus one for the segmentations) in one sequence browser over fractions.
    With keep_fraction_nodes=False only the sequences remain (half the memory for large cohorts).
    """
    scene = get_scene(scene)
    module_logics(scene)
    sh = _sh(scene)
    out = PatientNodes(patient=str(patient_id))
    patient_item = _child(sh, sh.GetSceneItemID(), out.patient, sh.CreateSubjectItem)
    course_item = _child(sh, patient_item, "Course", sh.CreateStudyItem)
    out.sh_items.update(patient=patient_item, course=course_item)
    fractions = list(fractions)
    per_modality = {m: ([], []) for m in (*MODALITIES, "segmentation")}   # modality -> (nodes, fractions)
    for n, (k, images) in enumerate(fractions):
        report(progress, n / max(len(fractions), 1), f"loading {patient_id} fraction {k}")
        frac_item = _child(sh, course_item, f"Fraction {k}", sh.CreateFolderItem)
        out.sh_items[k] = frac_item
        out.fractions.append(k)
        _add_fraction(out, patient_id, k, images, frac_item, per_modality, scene)
    _add_fraction_sequences(out, patient_id, per_modality, course_item, scene)
    if not keep_fraction_nodes:
        for node_id in [*out.volumes.values(), *out.segmentations.values()]:
            scene.RemoveNode(scene.GetNodeByID(node_id))
        out.volumes.clear()
        out.segmentations.clear()
    report(progress, 1.0, f"loaded {patient_id}")
    return out


def _add_fraction(out: PatientNodes, patient_id, k, images, frac_item, per_modality: dict, scene) -> None:
    """One fraction's volumes (one per modality present) and organ segmentation, under its SH item;
    recorded in `out` and appended to `per_modality` for the sequences."""
    attrs = {"patient": patient_id, "fraction": k}
    first = None
    for m in MODALITIES:
        image = getattr(images, m, None)
        if image is None:
            continue
        node = add_volume(image, f"{patient_id} F{k} {_MODALITY_NAMES[m]}", scene,
                          {**attrs, "modality": m})
        _style_volume(node, m)
        first = first or node
        out.volumes[(m, k)] = node.GetID()
        per_modality[m][0].append(node)
        per_modality[m][1].append(k)
        _place(scene, node, frac_item)
    masks = getattr(images, "masks", None) or {}
    if masks:
        seg = add_segmentation(masks, f"{patient_id} F{k} organs", first, scene,
                               {**attrs, "modality": "segmentation"})
        out.segmentations[k] = seg.GetID()
        per_modality["segmentation"][0].append(seg)
        per_modality["segmentation"][1].append(k)
        _place(scene, seg, frac_item)


def _add_fraction_sequences(out: PatientNodes, patient_id, per_modality: dict, course_item, scene) -> None:
    """A Sequence per modality (and one of the segmentations) in one browser, under the course."""
    browser = None
    for m, (nodes, values) in per_modality.items():
        if not nodes:
            continue
        label = _MODALITY_NAMES.get(m, "organs")
        seq, browser = add_sequence(nodes, values, f"{patient_id} {label}", scene, browser)
        seq.SetAttribute(ATTRIBUTE_PREFIX + "patient", out.patient)
        seq.SetAttribute(ATTRIBUTE_PREFIX + "modality", m)
        out.sequences[m] = seq.GetID()
        _place(scene, seq, course_item)
    if browser is not None:
        browser.SetName(f"{patient_id} fractions")
        out.browser = browser.GetID()
        _place(scene, browser, course_item)


def read_fractions(cohort, patient_id: str, reference: str = "ct", fractions=None, progress=None) -> dict:
    """fraction index -> FractionImages, read through COMPASSLib's ingest (one reference grid)."""
    from COMPASSLib import ingest
    from COMPASSLib.cohort import Cohort

    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    patient = cohort.patient(patient_id)
    indices = [f.index for f in patient.fractions] if fractions is None else list(fractions)
    loader = ingest.PatientLoader(cohort, patient_id, reference=reference)   # grid and structures read once
    out = {}
    for n, k in enumerate(indices):
        report(progress, n / max(len(indices), 1), f"reading {patient_id} fraction {k}")
        out[k] = loader.load(k)
    return out


# --- the whole patient ---------------------------------------------------------------------------
def load_patient(cohort, patient_id: str, scene=None, reference: str = "ct", fractions=None,
                 risk=None, bed: bool = True, alpha_beta_overrides=None, progress=None,
                 keep_fraction_nodes: bool = True) -> PatientNodes:
    """Everything COMPASS shows for one patient: the fraction series (CT, PET, dose, organs), the
    cumulative BED and EQD2 maps (organ alpha/beta from Resources/organs.yaml, or overrides), and
    with `risk` (risk.csv or DataFrame) the risk table and chart, with toxicity onsets from outcomes.csv."""
    from COMPASSLib.cohort import Cohort

    if not isinstance(cohort, Cohort):
        cohort = Cohort.load(cohort)
    scene = get_scene(scene)
    images = read_fractions(cohort, patient_id, reference, fractions, scaled(progress, 0.0, 0.4))
    nodes = add_fraction_series(patient_id, images.items(), scene, scaled(progress, 0.4, 0.8),
                                keep_fraction_nodes)
    if bed and images:
        from COMPASSLib import dose

        first = images[min(images)]
        ab = dose.alpha_beta_map(first.masks, first.dose, alpha_beta_overrides)
        maps = dose.cumulative_bed_eqd2({k: f.dose for k, f in images.items() if f.dose is not None}, ab)
        made_by = "organ map (Resources/organs.yaml)" + (f", overrides {alpha_beta_overrides}"
                                                         if alpha_beta_overrides else "")
        for kind in ("bed", "eqd2"):
            add_dose_maps(nodes, maps[kind], kind, scene, alpha_beta=made_by)
    report(progress, 0.9, f"adding risk of {patient_id}")
    add_provenance(scene, f"{patient_id} provenance", settings={
        "patient": patient_id, "reference": reference, "fractions": nodes.fractions, "bed": bed,
        "alpha_beta_overrides": alpha_beta_overrides,
        "risk": str(risk) if risk is not None and not hasattr(risk, "columns") else
        ("DataFrame" if risk is not None else None)}, inputs=_input_checksums(cohort, risk))
    if risk is not None:
        onsets = cohort.onsets(patient_id)
        nodes.risk_table = add_risk_table(risk, patient_id, scene).GetID()
        nodes.risk_chart = add_risk_plot(risk, patient_id, onsets, scene).GetID()
    report(progress, 1.0, f"loaded {patient_id}")
    return nodes


# --- provenance ----------------------------------------------------------------------------------
def _input_checksums(cohort, risk) -> dict:
    from COMPASSLib.provenance import sha256_file

    out = {}
    manifest = cohort.root / "cohort.json"
    if manifest.is_file():
        out["cohort.json"] = sha256_file(manifest)
    if risk is not None and not hasattr(risk, "columns") and Path(risk).is_file():
        out["risk.csv"] = sha256_file(risk)
    return out


def add_provenance(scene, name: str, settings: dict, inputs: dict | None = None):
    """A text node holding COMPASSLib.provenance.record(...) as JSON, so a saved .mrb records the
    settings, library versions and input checksums that made it."""
    import json

    from COMPASSLib.provenance import record

    node = scene.AddNewNodeByClass("vtkMRMLTextNode", scene.GetUniqueNameByString(name))
    node.SetText(json.dumps(record(settings, inputs), indent=2, default=str))
    node.SetAttribute(ATTRIBUTE_PREFIX + "content", "provenance")
    return node


# --- BED / EQD2 ----------------------------------------------------------------------------------
def add_dose_maps(patient: PatientNodes, maps: dict, kind: str, scene=None, alpha_beta=None,
                  progress=None) -> str:
    """Add cumulative BED or EQD2 maps (fraction -> SimpleITK image in Gy) as volumes under each
    fraction and as a Sequence synchronised with the patient's browser. Returns the sequence ID.
    `alpha_beta` (what made the map: Gy, or 'organ map') is recorded on every node."""
    scene = get_scene(scene)
    kind = kind.lower()
    label = _MODALITY_NAMES.get(kind, kind.upper())
    nodes, values = [], []
    for n, (k, image) in enumerate(sorted(maps.items())):
        report(progress, n / max(len(maps), 1), f"adding {label} fraction {k}")
        node = add_volume(image, f"{patient.patient} F{k} {label} cumulative", scene,
                          {"patient": patient.patient, "fraction": k, "modality": kind,
                           "alpha_beta_gy": alpha_beta})
        _style_volume(node, "dose")
        patient.volumes[(kind, k)] = node.GetID()
        if k in patient.sh_items:
            _place(scene, node, patient.sh_items[k])
        nodes.append(node)
        values.append(k)
    browser = scene.GetNodeByID(patient.browser) if patient.browser else None
    seq, browser = add_sequence(nodes, values, f"{patient.patient} {label}", scene, browser)
    seq.SetAttribute(ATTRIBUTE_PREFIX + "modality", kind)
    patient.sequences[kind] = seq.GetID()
    patient.browser = browser.GetID()
    if "course" in patient.sh_items:
        _place(scene, seq, patient.sh_items["course"])
    return seq.GetID()
