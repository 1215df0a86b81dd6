"""Thorax anatomy of a synthetic patient: parameters drawn per patient, organ labelmaps on a grid,
and the CT in HU. All lengths in mm, LPS (x to the patient's left, y posterior, z superior)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from COMPASSLib.synth.grid import Grid

# ROI names written to the RTSTRUCT, in the order of the file (canonical names of Resources/organs.yaml).
ROI_NAMES = ("BODY", "Lung_L", "Lung_R", "Heart", "Esophagus", "SpinalCord", "GTV")
ROI_TYPES = {"BODY": "EXTERNAL", "GTV": "GTV"}   # RTROIInterpretedType; the rest are ORGAN

# Cranio-caudal landmarks in mm (fixed, so the small and full grids show the same patient).
LUNG_APEX_Z_MM = 135.0
LUNG_LENGTH_MM = 300.0

# CT numbers (HU) of the tissue classes; the CT is painted in this order, later classes win.
HU = {"air": -1000.0, "soft": 30.0, "fat": -90.0, "lung": -840.0, "heart": 40.0, "esophagus": 35.0,
      "bone": 550.0, "cord": 35.0, "gtv": 25.0}


@dataclass
class AnatomyParams:
    body_a_mm: float          # body half-width (left-right)
    body_b_mm: float          # body half-depth (anterior-posterior)
    fat_mm: float             # subcutaneous fat thickness
    spine_y_mm: float         # centre of the vertebral body
    vertebra_r_mm: float
    cord_r_mm: float
    eso_x_mm: float
    eso_y_mm: float
    eso_r_mm: float
    eso_drift_mm: float       # left-right drift of the esophagus over the field of view
    heart_c_mm: tuple         # heart ellipsoid centre (x, y, z)
    heart_r_mm: tuple         # heart semi-axes
    lung_scale: float         # lung size relative to the chest
    site: str                 # "central" (mediastinal, near esophagus/heart) or "peripheral" (in a lung)
    gtv_c_mm: tuple
    gtv_r_mm: float           # GTV radius at planning

    def to_dict(self) -> dict:
        return asdict(self)


def draw_anatomy(rng: np.random.Generator, grid: Grid) -> AnatomyParams:
    """One patient's anatomy; sizes vary like adult thoraces, the tumour is central or peripheral."""
    half_fov_x = (grid.size[0] - 1) * grid.spacing_mm[0] / 2
    half_fov_y = (grid.size[1] - 1) * grid.spacing_mm[1] / 2
    a = min(rng.uniform(145, 185), half_fov_x - 8)
    b = min(rng.uniform(100, 128), half_fov_y - 8)
    spine_y = b - rng.uniform(55, 65)
    vert_r = rng.uniform(16, 21)
    eso = (rng.uniform(-8, 12), spine_y - vert_r - rng.uniform(10, 16))
    heart_r = (rng.uniform(50, 62), rng.uniform(40, 50), rng.uniform(45, 58))
    heart_c = (rng.uniform(15, 35), -b * 0.28 + rng.uniform(-8, 8), rng.uniform(-45, -25))
    site = "central" if rng.random() < 0.5 else "peripheral"
    gtv_r = rng.uniform(12, 22)
    side = 1.0 if rng.random() < 0.5 else -1.0
    zc = rng.uniform(-15, 55)
    if site == "central":
        # Beside the esophagus, at the hilum: beams to it cross the esophagus and often the heart.
        gtv_c = (eso[0] + side * rng.uniform(28, 42), eso[1] - rng.uniform(0, 25), zc)
    else:
        gtv_c = (side * a * rng.uniform(0.45, 0.6), rng.uniform(-0.35, 0.2) * b, zc)
    return AnatomyParams(
        body_a_mm=a, body_b_mm=b, fat_mm=rng.uniform(6, 18), spine_y_mm=spine_y, vertebra_r_mm=vert_r,
        cord_r_mm=rng.uniform(5.0, 6.5), eso_x_mm=eso[0], eso_y_mm=eso[1], eso_r_mm=rng.uniform(7, 10),
        eso_drift_mm=rng.uniform(-10, 10), heart_c_mm=heart_c, heart_r_mm=heart_r,
        lung_scale=rng.uniform(0.9, 1.05), site=site, gtv_c_mm=gtv_c, gtv_r_mm=gtv_r)


def _ellipse(X, Y, cx, cy, a, b):
    return ((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2 <= 1.0


def organ_masks(grid: Grid, p: AnatomyParams) -> dict:
    """ROI name -> bool (z, y, x) array for every ROI but the GTV (which changes per scan: `ball`).
    Organs may overlap (the lungs include the GTV's place): each mask is the organ as a clinician would
    contour it."""
    X, Y, Z = grid.mesh()
    full = lambda m: np.broadcast_to(m, grid.shape).copy()  # noqa: E731
    body = full(_ellipse(X, Y, 0, 0, p.body_a_mm, p.body_b_mm))
    # Lungs: two elliptic columns inside the rib cage, narrowing towards the apex at the top of the field.
    lung_a = p.body_a_mm * 0.36 * p.lung_scale
    lung_b = p.body_b_mm * 0.72 * p.lung_scale
    zr = np.clip((LUNG_APEX_Z_MM - Z) / LUNG_LENGTH_MM, 0, 1)   # 0 at the apex, 1 at the base
    taper = np.sqrt(np.clip(zr * 4, 0, 1))                   # narrower towards the apex
    lungs = {}
    for name, sign in (("Lung_L", 1.0), ("Lung_R", -1.0)):
        cx = sign * p.body_a_mm * 0.47
        m = _ellipse(X, Y, cx, -p.body_b_mm * 0.05, lung_a * taper + 1e-6, lung_b * taper + 1e-6)
        lungs[name] = full(m)
    hx, hy, hz = p.heart_c_mm
    ha, hb, hc = p.heart_r_mm
    heart = ((X - hx) / ha) ** 2 + ((Y - hy) / hb) ** 2 + ((Z - hz) / hc) ** 2 <= 1.0
    heart = full(heart)
    eso_x = p.eso_x_mm + p.eso_drift_mm * Z / LUNG_LENGTH_MM
    esophagus = full(_ellipse(X, Y, eso_x, p.eso_y_mm, p.eso_r_mm, p.eso_r_mm * 0.8))
    canal_y = p.spine_y_mm + p.vertebra_r_mm + 12.0
    cord = full(_ellipse(X, Y, 0, canal_y, p.cord_r_mm, p.cord_r_mm * 0.85))
    # The mediastinum and spine are not lung: carve them so the masks match what a lung contour shows.
    mediastinum = heart | full(np.abs(X - p.eso_x_mm * 0.5) < 22 + 0 * Y) \
        | full(_ellipse(X, Y, 0, p.spine_y_mm + 8, p.vertebra_r_mm + 14, p.vertebra_r_mm + 26))
    for name in lungs:
        lungs[name] &= ~mediastinum & body
    return {"BODY": body, **lungs, "Heart": heart, "Esophagus": esophagus, "SpinalCord": cord}


def ball(grid: Grid, centre_mm, radius_mm: float) -> np.ndarray:
    X, Y, Z = grid.mesh()
    cx, cy, cz = centre_mm
    return np.broadcast_to((X - cx) ** 2 + (Y - cy) ** 2 + ((Z - cz) / 0.9) ** 2 <= radius_mm ** 2,
                           grid.shape).copy()


def bone_mask(grid: Grid, p: AnatomyParams) -> np.ndarray:
    """Vertebral body and the ring of the neural arch around the canal."""
    X, Y, _ = grid.mesh()
    canal_y = p.spine_y_mm + p.vertebra_r_mm + 12.0
    vert = _ellipse(X, Y, 0, p.spine_y_mm, p.vertebra_r_mm * 1.15, p.vertebra_r_mm)
    arch = _ellipse(X, Y, 0, canal_y, 16, 14) & ~_ellipse(X, Y, 0, canal_y, 9.5, 8.5)
    return np.broadcast_to(vert | arch, grid.shape)


def tissue_classes(grid: Grid, p: AnatomyParams, masks: dict) -> dict:
    """Tissue class -> bool array, in painting order (later wins), for the CT and the PET background."""
    X, Y, _ = grid.mesh()
    inner = np.broadcast_to(_ellipse(X, Y, 0, 0, p.body_a_mm - p.fat_mm, p.body_b_mm - p.fat_mm), grid.shape)
    lungs = masks["Lung_L"] | masks["Lung_R"]
    return {"soft": masks["BODY"], "fat": masks["BODY"] & ~inner, "lung": lungs, "heart": masks["Heart"],
            "esophagus": masks["Esophagus"], "bone": bone_mask(grid, p) & masks["BODY"],
            "cord": masks["SpinalCord"], "gtv": masks["GTV"]}


def ct_hu(grid: Grid, classes: dict, rng: np.random.Generator, noise_hu: float) -> np.ndarray:
    """The CT in HU (float32): tissue classes with Gaussian quantum noise, air outside."""
    ct = np.full(grid.shape, HU["air"], dtype=np.float32)
    for name, m in classes.items():
        ct[m] = HU[name]
    body = classes["soft"]
    ct[body] += rng.normal(0.0, noise_hu, size=int(body.sum())).astype(np.float32)
    return ct
