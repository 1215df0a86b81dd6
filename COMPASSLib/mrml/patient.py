"""A patient in the scene: the fraction series (CT, PET, dose, organs per fraction) as one Sequence per
modality under Patient / Course in the subject hierarchy, browsed together (the browser's proxy nodes are
what views show), the cumulative BED/EQD2 maps, the slice views set up to show them, the risk table and
chart, and a provenance node; `load_patient` does all of it from a cohort."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from COMPASSLib.mrml.coordinates import _array
from COMPASSLib.mrml.hierarchy import course_item, fraction_item, patient_item, place
from COMPASSLib.mrml.nodes import (ATTRIBUTE_PREFIX, DOSE_MODALITIES, _style_segmentation, _style_volume,
                                   new_sequence, segmentation_node, synchronise, volume_node)
from COMPASSLib.mrml.risk import add_risk_plot, add_risk_table
from COMPASSLib.mrml.scene import get_scene, module_logics
from COMPASSLib.mrml.slicerrt import mark_dose_volume, set_study_dose_unit
from COMPASSLib.mrml.views import ensure_slice_views, set_layout, show_layers, show_sequence_browser
from COMPASSLib.progress import report, scaled

MODALITIES = ("ct", "pet", "dose")
# How a modality is named in node names.
_MODALITY_NAMES = {"ct": "CT", "pet": "PET", "dose": "Dose", "bed": "BED", "eqd2": "EQD2",
                   "segmentation": "organs"}
BED_OPACITY = 0.5   # the cumulative BED over the CT in the slice views


@dataclass
class PatientNodes:
    """What `load_patient` put into the scene (node IDs, so the object survives scene edits).

    Each fraction's data is held once, as an item of its modality's Sequence; views show the browser's
    proxy nodes (`proxies`), whose content is the selected fraction's. Only with keep_fraction_nodes=True
    does every fraction also have nodes of its own in the scene (`volumes`, `segmentations`)."""
    patient: str
    fractions: list = field(default_factory=list)                 # fraction indices, delivery order
    volumes: dict = field(default_factory=dict)                   # (modality, fraction) -> kept node ID
    segmentations: dict = field(default_factory=dict)             # fraction -> kept node ID
    sequences: dict = field(default_factory=dict)                 # modality (and "segmentation") -> sequence ID
    proxies: dict = field(default_factory=dict)                   # modality (and "segmentation") -> proxy ID
    browser: str | None = None                                    # sequence browser node ID
    sh_items: dict = field(default_factory=dict)                  # "patient", "course", kept fraction -> SH item
    risk_table: str | None = None                                 # table node ID (organ x fraction risk)
    risk_chart: str | None = None                                 # plot chart node ID
    keep_fraction_nodes: bool = False

    def node(self, scene, modality, fraction):
        """The node holding `modality` ("segmentation" for the organs) at `fraction`: the fraction's own
        node where kept, else the Sequence's item (it lies in the Sequence's scene: read it, show the
        proxy). None where there is none."""
        kept = self.segmentations.get(fraction) if modality == "segmentation" else \
            self.volumes.get((modality, fraction))
        if kept:
            return scene.GetNodeByID(kept)
        seq = scene.GetNodeByID(self.sequences[modality]) if modality in self.sequences else None
        return seq.GetDataNodeAtValue(str(fraction)) if seq is not None else None

    def proxy(self, scene, modality):
        """The browser's proxy node of a modality (what the views show), or None."""
        return scene.GetNodeByID(self.proxies[modality]) if modality in self.proxies else None

    def show_fraction(self, scene, fraction) -> bool:
        """Move the browser to `fraction`: the proxies then hold that fraction's data."""
        browser = scene.GetNodeByID(self.browser) if self.browser else None
        return bool(browser is not None and browser.SetSelectedItemByIndexValue(str(fraction)))

    def shown_node(self, scene, modality, fraction):
        """A node of the scene showing `modality` at `fraction` (for views, segment export, overlays):
        the fraction's own node where kept, else the proxy with the browser moved to the fraction."""
        kept = self.segmentations.get(fraction) if modality == "segmentation" else \
            self.volumes.get((modality, fraction))
        if kept:
            return scene.GetNodeByID(kept)
        if modality in self.proxies and self.node(scene, modality, fraction) is not None and \
                self.show_fraction(scene, fraction):
            return self.proxy(scene, modality)
        return None


# --- fraction series -----------------------------------------------------------------------------
def add_fraction_series(patient_id: str, fractions, scene=None, progress=None,
                        keep_fraction_nodes: bool = False) -> PatientNodes:
    """Put a patient's fraction series into the scene.

    `fractions`: iterable of (fraction index, FractionImages) with `.ct`, `.pet`, `.dose` (SimpleITK,
    LPS, any may be None) and `.masks` (organ -> 0/1 mask). Makes a Sequence per modality (and one of
    the organ segmentations, with 3D surfaces) indexed by fraction, browsed in one sequence browser set
    to the last fraction, under Patient / Course in the subject hierarchy; the course carries the dose
    unit SlicerRT reads and the dose volumes SlicerRT's identification. A fraction's images pass into its
    Sequence item without a scene node of their own, so each is held once; keep_fraction_nodes=True
    also keeps one node per modality and fraction under Course / Fraction k (twice the memory).
    """
    scene = get_scene(scene)
    module_logics(scene)
    out = PatientNodes(patient=str(patient_id), keep_fraction_nodes=keep_fraction_nodes)
    patient = patient_item(scene, out.patient)
    course = course_item(scene, patient)
    set_study_dose_unit(scene, course)
    out.sh_items.update(patient=patient, course=course)
    fractions = list(fractions)
    sequences, highs, kept = {}, {}, []   # modality -> sequence node, -> largest value; kept (node, modality)
    for n, (k, images) in enumerate(fractions):
        report(progress, n / max(len(fractions), 1), f"loading {patient_id} fraction {k}")
        out.fractions.append(k)
        for m, (node, high) in _fraction_nodes(out.patient, k, images, scene).items():
            if m not in sequences:
                sequences[m] = new_sequence(f"{patient_id} {_MODALITY_NAMES[m]}", scene)
            sequences[m].SetDataNodeAtValue(node, str(k))   # the Sequence stores a copy
            highs[m] = max(highs.get(m, high), high)
            if keep_fraction_nodes:
                kept.append((_keep(out, m, k, node, scene), m))
    for m in (*MODALITIES, "segmentation"):
        if m in sequences:
            _browse(out, m, sequences[m], highs[m], scene)
    for node, m in kept:
        _style(node, m, highs[m])
    report(progress, 1.0, f"loaded {patient_id}")
    return out


def _fraction_nodes(patient_id, k, images, scene) -> dict:
    """modality -> (node in no scene, largest voxel value) for one fraction: a volume per modality
    present and the organ segmentation on the first volume's grid."""
    attrs = {"patient": patient_id, "fraction": k}
    made, first = {}, None
    for m in MODALITIES:
        image = getattr(images, m, None)
        if image is None:
            continue
        node = volume_node(image, f"{patient_id} F{k} {_MODALITY_NAMES[m]}", {**attrs, "modality": m})
        if m in DOSE_MODALITIES:
            mark_dose_volume(node)
        made[m] = (node, float(np.max(_array(image))))
        first = first or node
    masks = getattr(images, "masks", None) or {}
    if masks:
        made["segmentation"] = (segmentation_node(masks, f"{patient_id} F{k} organs", first, scene,
                                                  {**attrs, "modality": "segmentation"}), 0.0)
    return made


def _keep(out: PatientNodes, modality, k, node, scene):
    """Keep a fraction's node in the scene too, under Course / Fraction k (keep_fraction_nodes=True)."""
    node.SetName(scene.GetUniqueNameByString(node.GetName()))
    node = scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    if k not in out.sh_items:
        out.sh_items[k] = fraction_item(scene, out.sh_items["course"], k)
    place(scene, node, out.sh_items[k])
    if modality == "segmentation":
        out.segmentations[k] = node.GetID()
    else:
        out.volumes[(modality, k)] = node.GetID()
    return node


def _style(node, modality, high) -> None:
    if modality == "segmentation":
        _style_segmentation(node)
    else:
        _style_volume(node, modality, high)


def _browse(out: PatientNodes, modality, seq, high, scene) -> None:
    """Synchronise a modality's Sequence in the patient's browser (made with the first one, set to the
    last fraction); sequence, proxy and browser go under the course (SlicerRT finds the dose unit there)."""
    seq.SetAttribute(ATTRIBUTE_PREFIX + "patient", out.patient)
    seq.SetAttribute(ATTRIBUTE_PREFIX + "modality", modality)
    browser = scene.GetNodeByID(out.browser) if out.browser else None
    proxy, browser = synchronise(seq, browser, scene, f"{out.patient} {_MODALITY_NAMES.get(modality, modality)}")
    course = out.sh_items["course"]
    if out.browser is None:
        browser.SetName(f"{out.patient} fractions")
        # the latest fraction: the cumulative BED and risk of the patient as they are now
        browser.SetSelectedItemNumber(seq.GetNumberOfDataNodes() - 1)
        out.browser = browser.GetID()
        place(scene, browser, course)
    out.sequences[modality] = seq.GetID()
    place(scene, seq, course)
    if proxy is not None:
        if modality in DOSE_MODALITIES:
            mark_dose_volume(proxy)
        _style(proxy, modality, high)
        out.proxies[modality] = proxy.GetID()
        place(scene, proxy, course)


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
                 keep_fraction_nodes: bool = False) -> PatientNodes:
    """Everything COMPASS shows for one patient: the fraction series (CT, PET, dose, organs), the
    cumulative BED and EQD2 maps (organ alpha/beta from Resources/organs.yaml, or overrides), the slice
    views showing them (`show_patient`), and with `risk` (risk.csv or DataFrame) the risk table and
    chart, with toxicity onsets from outcomes.csv."""
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
    del images
    show_patient(nodes, scene)
    report(progress, 0.9, f"adding risk of {patient_id}")
    add_provenance(scene, f"{patient_id} provenance", settings={
        "patient": patient_id, "reference": reference, "fractions": nodes.fractions, "bed": bed,
        "alpha_beta_overrides": alpha_beta_overrides, "keep_fraction_nodes": keep_fraction_nodes,
        "risk": str(risk) if risk is not None and not hasattr(risk, "columns") else
        ("DataFrame" if risk is not None else None)}, inputs=_input_checksums(cohort, risk))
    if risk is not None:
        onsets = cohort.onsets(patient_id)
        nodes.risk_table = add_risk_table(risk, patient_id, scene).GetID()
        nodes.risk_chart = add_risk_plot(risk, patient_id, onsets, scene).GetID()
    report(progress, 1.0, f"loaded {patient_id}")
    return nodes


def show_patient(patient: PatientNodes, scene=None, opacity: float = BED_OPACITY) -> list:
    """Set the scene up to show the patient without manual steps: every slice view with the CT behind
    and the cumulative BED (else the dose) over it at `opacity`, fitted to the CT; the organs outlined
    in all views by their display node (a segmentation is not a label volume) and as surfaces in 3D;
    the four-up layout; the browser in the application's sequence toolbar. On slicer-core, a scene
    without views first gets the application's (views.ensure_slice_views), so a saved scene opens so.
    Returns the slice composite nodes."""
    scene = get_scene(scene)
    ensure_slice_views(scene)
    set_layout(scene)
    background = patient.proxy(scene, "ct")
    foreground = patient.proxy(scene, "bed") or patient.proxy(scene, "dose")
    if background is None:   # no CT: the dose itself behind
        background, foreground = foreground, None
    composites = show_layers(scene, background, foreground, opacity if foreground is not None else None,
                             fit=background is not None)
    browser = scene.GetNodeByID(patient.browser) if patient.browser else None
    if browser is not None:
        show_sequence_browser(browser)
    return composites


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
    """Add cumulative BED or EQD2 maps (fraction -> SimpleITK image in Gy) as a Sequence synchronised
    with the patient's browser (and as nodes under each fraction where the patient keeps them), marked
    as dose for SlicerRT. Returns the sequence ID. `alpha_beta` (what made the map: Gy, or 'organ map')
    is recorded on every item."""
    scene = get_scene(scene)
    kind = kind.lower()
    label = _MODALITY_NAMES.get(kind, kind.upper())
    if "course" not in patient.sh_items:
        patient.sh_items["patient"] = patient_item(scene, patient.patient)
        patient.sh_items["course"] = course_item(scene, patient.sh_items["patient"])
        set_study_dose_unit(scene, patient.sh_items["course"])
    seq = new_sequence(f"{patient.patient} {label}", scene)
    high, kept = 0.0, []
    for n, (k, image) in enumerate(sorted(maps.items())):
        report(progress, n / max(len(maps), 1), f"adding {label} fraction {k}")
        node = volume_node(image, f"{patient.patient} F{k} {label} cumulative",
                           {"patient": patient.patient, "fraction": k, "modality": kind, "alpha_beta_gy": alpha_beta})
        mark_dose_volume(node)
        seq.SetDataNodeAtValue(node, str(k))
        high = max(high, float(np.max(_array(image))))
        if patient.keep_fraction_nodes:
            kept.append(_keep(patient, kind, k, node, scene))
    _browse(patient, kind, seq, high, scene)
    for node in kept:
        _style_volume(node, kind, high)
    return seq.GetID()
