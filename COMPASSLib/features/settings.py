"""Feature-extraction settings: plain data, loadable from and savable to YAML/JSON, recorded with every table.

Profiles
- "full" (default): bed_/dvh_ kinetics, shape once per organ, pyradiomics first-order + GLCM, GLRLM, GLSZM,
  GLDM, NGTDM on the cumulative BED map (dose_), the fraction's CT (ct_) and PET (pet_), PET SUV figures,
  and summaries (tex_) of voxelwise texture maps of the cumulative BED (features.texture_summary).
- "fast": bed_/dvh_ kinetics, PET SUVmean/max/peak and PET first-order only (no texture, no shape, no CT):
  for quick model experiments on large synthetic cohorts.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import yaml

from COMPASSLib.errors import InputError

DEFAULT_ORGANS = ("SpinalCord", "Heart", "Esophagus")
# pyradiomics feature classes a profile may extract per modality (shape is switched separately); not to
# be confused with the voxelwise texture maps below (TEXTURE_MAP_DEFAULTS, tex_ columns).
RADIOMICS_CLASSES = ["firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]

# Organ-relevant BED levels (Gy) for V_x. One list for all organs, so every row has the same columns.
# Chosen from the QUANTEC constraints (physical dose in 2 Gy fractions) converted to BED at each organ's
# table alpha/beta: heart V25 Gy -> 42 Gy BED (a/b 3); esophagus V35/V50/V60 -> 42/60/72 Gy (a/b 10);
# spinal cord Dmax 50 Gy -> 100 Gy (a/b 2). Rounded: 20 (low-dose bath) .. 100 Gy.
DEFAULT_BED_LEVELS = [20.0, 40.0, 50.0, 60.0, 70.0, 100.0]

# Voxelwise texture maps of the cumulative BED inside each organ, summarised per row as tex_ columns.
# bin_width_gy None: the dosiomics file's binWidth (same grey levels as the dose_ radiomics features);
# organs None: every scored organ. Local GLCM contrast/entropy is the paper's "dose texture" signal.
TEXTURE_MAP_DEFAULTS = {"features": ["glcm:Contrast", "glcm:JointEntropy", "firstorder:Entropy"], "radius": 1,
                        "bin_width_gy": None, "organs": None, "percentiles": [50, 90]}

PROFILES = {
    "full": {"radiomics": {"dose": RADIOMICS_CLASSES, "ct": RADIOMICS_CLASSES, "pet": RADIOMICS_CLASSES}, "shape": True,
             "texture": TEXTURE_MAP_DEFAULTS},
    "fast": {"radiomics": {"pet": ["firstorder"]}, "shape": False, "texture": None},
}


@dataclasses.dataclass
class FeatureSettings:
    profile: str = "full"
    organs: list | None = None          # None: organs in outcomes.csv, else DEFAULT_ORGANS
    alpha_beta: dict = dataclasses.field(default_factory=dict)   # organ -> Gy, wins over Resources/organs.yaml
    bed_levels_gy: list = dataclasses.field(default_factory=lambda: list(DEFAULT_BED_LEVELS))
    # modality -> pyradiomics classes to compute (subset of the YAML file's featureClass); None: from profile
    radiomics: dict | None = None
    # modality -> pyradiomics parameter file: built-in name ("dose", "ct", "pet") or a path
    radiomics_params: dict = dataclasses.field(default_factory=lambda: {"dose": "dose", "ct": "ct", "pet": "pet"})
    shape: bool | None = None           # shape features once per organ; None: from profile
    delta: bool = True                  # ct_/pet_ delta columns against fraction 1
    reference: str = "ct"               # reference grid for ingest.load_fraction
    # voxelwise BED texture-map summaries (tex_ columns): keys of TEXTURE_MAP_DEFAULTS (missing ones take
    # the default), False: off; None: from profile
    texture: dict | bool | None = None

    def __post_init__(self):
        _check_values(self)
        if self.profile not in PROFILES:
            raise InputError(f"unknown feature profile {self.profile!r}; choose one of {', '.join(PROFILES)}")
        if self.radiomics is None:
            self.radiomics = {m: list(c) for m, c in PROFILES[self.profile]["radiomics"].items()}
        if self.shape is None:
            self.shape = PROFILES[self.profile]["shape"]
        if self.texture is None:
            self.texture = PROFILES[self.profile]["texture"]
        self.texture = _texture_settings(self.texture) if self.texture else False
        unknown = set(self.radiomics) - {"dose", "ct", "pet"}
        if unknown:
            raise InputError(f"radiomics settings for unknown modality {sorted(unknown)} (dose, ct, pet)")
        for organ, ab in self.alpha_beta.items():
            if isinstance(ab, bool) or not isinstance(ab, (int, float)) or not (math.isfinite(ab) and ab > 0):
                raise InputError(f"alpha/beta override for {organ} must be a number > 0 Gy (got {ab!r})")

    # ---- persistence
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source=None) -> "FeatureSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in ("radiomics_resolved", "texture_resolved")}   # resolved() too
        unknown = set(d) - names
        if unknown:
            raise InputError(f"unknown feature setting(s) {sorted(unknown)}; known: {sorted(names)}", file=source)
        try:
            return cls(**d)
        except InputError as e:
            raise e.at(file=source)
        except TypeError as e:   # a value of the wrong kind (a list where a name belongs, ...)
            raise InputError(f"feature settings are malformed: {e}", file=source) from None

    @classmethod
    def load(cls, path, **overrides) -> "FeatureSettings":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            d = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except FileNotFoundError:
            raise InputError("feature settings file not found", file=path) from None
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise InputError(f"feature settings file is not valid {path.suffix[1:].upper() or 'YAML'}: "
                             f"{' '.join(str(e).split())}", file=path) from None
        except UnicodeDecodeError as e:
            raise InputError(f"feature settings file is not UTF-8 text: {e.reason}", file=path) from None
        if not isinstance(d, dict):
            raise InputError("feature settings file must hold a mapping", file=path)
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if overrides.get("profile", d.get("profile")) != d.get("profile", "full"):
            # a saved file spells out its profile's classes; a new profile must bring its own
            defaults = PROFILES.get(d.get("profile", "full"), {})
            if d.get("radiomics") == defaults.get("radiomics"):
                d.pop("radiomics", None)
            if d.get("shape") == defaults.get("shape"):
                d.pop("shape", None)
            if (d.get("texture") or None) == (_texture_settings(defaults["texture"]) if defaults.get("texture")
                                               else None):
                d.pop("texture", None)
        d.update(overrides)
        return cls.from_dict(d, source=path)

    def save(self, path) -> Path:
        from COMPASSLib.atomic import write_json, write_text

        path = Path(path)
        if path.suffix.lower() == ".json":
            return write_json(path, self.to_dict())
        return write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    # ---- what the extraction uses
    def params(self, modality: str) -> dict:
        """The pyradiomics parameters for `modality`, restricted to the classes this profile computes."""
        from COMPASSLib.features.radiomics import load_params

        p = load_params(self.radiomics_params.get(modality, modality))
        available = p.get("featureClass") or {c: [] for c in RADIOMICS_CLASSES}
        wanted = self.radiomics.get(modality) or []
        missing = [c for c in wanted if c not in available]
        if missing:
            raise InputError(f"{modality} pyradiomics file does not enable class(es) {missing}",
                             file=self.radiomics_params.get(modality))
        p["featureClass"] = {c: available[c] for c in wanted}
        return p

    def resolved(self) -> dict:
        """Settings with the pyradiomics parameters' content (not file names): what the cache key and the
        sidecar JSON record, so editing a YAML file invalidates cached results."""
        d = self.to_dict()
        d["radiomics_resolved"] = {m: self.params(m) for m in sorted(self.radiomics) if self.radiomics[m]}
        d["texture_resolved"] = self.texture_params()
        return d

    def texture_params(self) -> dict | None:
        """The texture-map settings with the bin width filled in (None when texture maps are off)."""
        if not self.texture:
            return None
        t = dict(self.texture)
        if t["bin_width_gy"] is None:
            from COMPASSLib.features.radiomics import load_params

            p = load_params(self.radiomics_params.get("dose", "dose"))
            t["bin_width_gy"] = float((p.get("setting") or {}).get("binWidth", 25.0))   # pyradiomics' default
        return t


def _check_values(fs: FeatureSettings) -> None:
    """The settings' lists and names of the right kind (a text among the BED levels used to reach the DVH
    code as a ValueError, a string `organs` to be read letter by letter)."""
    levels = fs.bed_levels_gy
    if not isinstance(levels, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in levels):
        raise InputError(f"bed_levels_gy must be a list of doses > 0 Gy, got {levels!r}")
    if fs.organs is not None and (not isinstance(fs.organs, (list, tuple))
                                  or not all(isinstance(o, str) and o for o in fs.organs)):
        raise InputError(f"organs must be a list of organ names (or absent), got {fs.organs!r}")
    if fs.reference not in ("ct", "dose"):
        raise InputError(f"reference must be 'ct' or 'dose', got {fs.reference!r}")
    if not isinstance(fs.alpha_beta, dict):
        raise InputError(f"alpha_beta must map organs to Gy, got {fs.alpha_beta!r}")


def _texture_settings(texture) -> dict:
    """Texture settings completed with the defaults and checked (feature names by texture_maps.parse_features)."""
    from COMPASSLib.features.texture_maps import parse_features

    if texture is True:
        texture = {}
    if not isinstance(texture, dict):
        raise InputError(f"texture settings must be a mapping of {sorted(TEXTURE_MAP_DEFAULTS)} or false "
                         f"(got {texture!r})")
    unknown = set(texture) - set(TEXTURE_MAP_DEFAULTS)
    if unknown:
        raise InputError(f"unknown texture setting(s) {sorted(unknown)}; known: {sorted(TEXTURE_MAP_DEFAULTS)}")
    t = {**TEXTURE_MAP_DEFAULTS, **texture}
    t["features"] = parse_features(t["features"])
    if not isinstance(t["radius"], int) or isinstance(t["radius"], bool) or t["radius"] < 1:
        raise InputError(f"texture radius must be a whole number of voxels >= 1 (got {t['radius']!r})")
    bw = t["bin_width_gy"]
    if bw is not None and (not isinstance(bw, (int, float)) or isinstance(bw, bool) or not bw > 0):
        raise InputError(f"texture bin_width_gy must be a number > 0 Gy or null (got {bw!r})")
    pct = t["percentiles"]
    if not isinstance(pct, (list, tuple)) or not all(isinstance(q, (int, float)) and 0 <= q <= 100 for q in pct):
        raise InputError(f"texture percentiles must be a list of numbers in 0..100 (got {pct!r})")
    t["percentiles"] = list(pct)
    t["organs"] = None if t["organs"] is None else list(t["organs"])
    return t


def organs_to_score(settings: FeatureSettings, cohort) -> list:
    if settings.organs:
        return list(settings.organs)
    with_outcomes = []
    for o in cohort.outcomes():
        if o.organ not in with_outcomes:
            with_outcomes.append(o.organ)
    return with_outcomes or list(DEFAULT_ORGANS)
