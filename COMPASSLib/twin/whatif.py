"""What if: the twin projects the risk of a patient's remaining fractions under a changed plan.

After fraction K (fractions 1..K delivered), each scenario gives the dose of every remaining fraction:
    as_planned      each remaining fraction = the last delivered fraction's dose (fraction K)
    ORGAN=F[,...]   as planned, with the dose inside the organ's contour (fraction K's) scaled by F
    fractions=N     as planned's remaining physical total, split equally over N - K fractions
    plan file(s)    a replacement per-fraction RTDOSE (one file: every remaining fraction; several: one each)
Dose features of the projected fractions come from the same code as delivered ones (features.fraction,
organ_bed: voxelwise BED with the organ's alpha/beta, continuing the delivered running sums exactly);
image features (ct_, pet_) are forecast by twin.forecast, whose residual draws are pooled with the
classifier's bootstrap ensemble into the risk interval. LKB NTCP of the projected cumulative DVH per row.
docs/whatif.md says which columns are exact and which forecast.

`project(...)` returns the projection DataFrame (PROJECTION_COLUMNS + extra); `projected_bed_image(...)`
the projected cumulative BED of one organ as a SimpleITK image (the Slicer module's What-if volume).
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from COMPASSLib.errors import FeatureError, InputError
from COMPASSLib.progress import report

log = logging.getLogger(__name__)

AS_PLANNED = "as_planned"
PROJECTION_COLUMNS = ["scenario", "patient", "organ", "fraction", "delivered", "bed_mean_gy", "eqd2_mean_gy",
                      "risk", "ci_low", "ci_high", "lkb_ntcp"]
# a scenario's risk minus as planned's, and that change's own (paired) interval: `_changes`
CHANGE_COLUMNS = ["change", "change_low", "change_high"]
EXTRA_COLUMNS = ["dose_mean_gy", "warning", "threshold"] + CHANGE_COLUMNS
DEFAULT_DRAWS = 40     # forecast residual draws per trajectory (each scored with the whole ensemble)
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    scale: tuple = ()          # ((organ, factor), ...) for the remaining fractions
    fractions: int | None = None   # total fractions of the course (hypofractionation)
    plan: tuple = ()           # per-fraction RTDOSE file(s) replacing the as-planned dose


def parse_scale(text: str) -> Scenario:
    """"Heart=0.5" or "Heart=0.5,Esophagus=0.8" -> Scenario named as given; InputError for bad syntax
    or a factor that is not a number >= 0."""
    pairs = []
    for part in str(text).split(","):
        organ, eq, value = part.partition("=")
        if not eq or not organ.strip():
            raise InputError(f"--scale {text!r}: expected ORGAN=FACTOR (e.g. Heart=0.5)")
        try:
            factor = float(value)
        except ValueError:
            raise InputError(f"--scale {text!r}: the factor {value!r} is not a number") from None
        if not math.isfinite(factor) or factor < 0:
            raise InputError(f"--scale {text!r}: the factor must be a number >= 0 (a dose cannot be negative)")
        pairs.append((organ.strip(), factor))
    return Scenario(str(text), scale=tuple(pairs))


def scenarios_from_options(scales=(), plans=(), fractions=None) -> list:
    """as_planned first, then one scenario per --scale, per --plan (comma-separated files: one per remaining
    fraction) and --fractions, named as the options were given."""
    from pathlib import Path

    out = [Scenario(AS_PLANNED)]
    out += [parse_scale(s) for s in scales]
    for p in plans:
        files = tuple(f for f in str(p).split(",") if f)
        out.append(Scenario(",".join(Path(f).name for f in files), plan=files))
    if fractions is not None:
        out.append(Scenario(f"fractions={fractions}", fractions=fractions))
    return out


def check_scenarios(scenarios, organs) -> None:
    """Unknown organs (naming the twin's) and bad fraction counts, before anything is read."""
    import numbers

    for s in scenarios:
        for organ, factor in s.scale:
            if organ not in organs:
                raise InputError(f"scenario {s.name!r}: unknown organ {organ!r}; the twin knows {', '.join(organs)}")
            if not (factor >= 0):
                raise InputError(f"scenario {s.name!r}: scale factor must be >= 0, got {factor}")
        if s.fractions is not None and (isinstance(s.fractions, bool) or not isinstance(s.fractions, numbers.Integral)
                                        or s.fractions < 1):
            raise InputError(f"scenario {s.name!r}: --fractions must be a whole number >= 1, got {s.fractions!r}")


# ------------------------------------------------------------------------------------------ one course
class Course:
    """One patient's course after fraction K: the running BED sums after K (bitwise those of the feature
    table: the same organ_bed code over the same doses), fraction K's dose, contours and grid."""

    def __init__(self, cohort, patient_id, after, settings, organs, planned=None):
        from COMPASSLib import dose as dosemod
        from COMPASSLib.features.organ_bed import add_fraction
        from COMPASSLib.ingest import PatientLoader

        self.cohort, self.patient_id, self.settings, self.organs = cohort, patient_id, settings, list(organs)
        patient = cohort.patient(patient_id)
        delivered = sorted(f.index for f in patient.fractions)
        if isinstance(after, bool) or not isinstance(after, (int, np.integer)) or after < 1:
            raise InputError(f"--after must be a whole number >= 1 (fractions delivered), got {after!r}",
                             patient=patient_id)
        if after > len(delivered) or delivered[:after] != list(range(1, after + 1)):
            raise InputError(f"--after {after} is beyond the delivered fractions: the patient has fraction(s) "
                             f"{delivered or 'none'}", patient=patient_id, file=cohort.root / "cohort.json")
        self.after = int(after)
        self.planned = int(planned) if planned is not None else len(delivered)
        self.loader = PatientLoader(cohort, patient_id, reference=settings.reference, modalities=("dose", "rtstruct"),
                                    organs=self.organs)
        state = None
        for k in range(1, self.after + 1):
            images = self.loader.load(k)
            _, state = add_fraction(dosemod.checked_dose(images.dose, f"dose of fraction {k}"), self.organs,
                                    settings.alpha_beta, state)
        self.state, self.last = state, images
        self.last_dose = dosemod.checked_dose(images.dose, f"dose of fraction {self.after}")
        self._plans = {}

    @property
    def reference(self):
        return self.last.reference

    def _plan_dose(self, path, fraction):
        from COMPASSLib import dose as dosemod
        from COMPASSLib.ingest import read_dose_on_grid

        from pathlib import Path

        if path not in self._plans:   # relative to the working folder, not to the cohort's
            image = read_dose_on_grid(self.cohort, [Path(path).resolve()], self.reference, self.patient_id, fraction)
            owner = image.GetMetaData("PatientID").strip() if image.HasMetaDataKey("PatientID") else ""
            if owner and owner != self.patient_id:
                raise InputError(f"plan RTDOSE belongs to patient {owner!r}, not to this patient", file=path,
                                 patient=self.patient_id)
            self._plans[path] = dosemod.checked_dose(image, f"plan dose {path}")
        return self._plans[path]

    def doses(self, scenario: Scenario) -> list:
        """The physical dose (float64 arrays on the grid) of each remaining fraction K+1, K+2, ..."""
        k = self.after
        if scenario.plan:
            files = scenario.plan
            n = self.planned - k if len(files) == 1 else len(files)
            paths = [files[0]] * n if len(files) == 1 else list(files)
            base = [self._plan_dose(p, k + 1 + i) for i, p in enumerate(paths)]
        else:
            base = [self.last_dose] * (self.planned - k)
        if scenario.scale:
            factor = np.ones_like(self.last_dose)
            for organ, f in scenario.scale:   # overlapping organs of one scenario: the factors multiply
                mask = self._mask(organ, scenario)
                factor[mask] *= f
            base = [d * factor for d in base]
        if scenario.fractions is not None:
            if scenario.fractions <= k:
                raise InputError(f"scenario {scenario.name!r}: {scenario.fractions} fractions in all leave none "
                                 f"after fraction {k}", patient=self.patient_id)
            total = np.sum(base, axis=0) if base else np.zeros_like(self.last_dose)
            base = [total / (scenario.fractions - k)] * (scenario.fractions - k)
        if not base:
            raise InputError(f"nothing to project after fraction {k}: the course has {self.planned} fraction(s) "
                             "(give the planned number of fractions, --planned N)", patient=self.patient_id)
        return base

    def _mask(self, organ, scenario):
        import SimpleITK as sitk

        if organ not in self.last.masks:
            raise InputError(f"scenario {scenario.name!r}: organ {organ} has no contour in fraction {self.after} "
                             f"(contoured: {', '.join(sorted(self.last.masks)) or 'none'})", patient=self.patient_id,
                             fraction=self.after)
        return sitk.GetArrayViewFromImage(self.last.masks[organ]) > 0

    def final_state(self, scenario: Scenario) -> dict:
        """The running sums after the last projected fraction (organ_bed's state)."""
        from COMPASSLib.features.organ_bed import add_fraction

        state = self.state
        for d in self.doses(scenario):
            _, state = add_fraction(d, self.organs, self.settings.alpha_beta, state)
        return state

    def future_rows(self, scenario: Scenario, ctx):
        """(rows, state): the feature rows (features.fraction) of the projected fractions, ct_/pet_ columns
        left to the forecast (the images are not known: no CT, no PET), and the running sums after the last
        of them (final_state's, from the same pass)."""
        from COMPASSLib.features.fraction import fraction_rows
        from COMPASSLib.geometry import image_like
        from COMPASSLib.ingest import FractionImages

        rows, state = [], self.state
        for i, d in enumerate(self.doses(scenario)):
            j = self.after + 1 + i
            images = FractionImages(ct=None, pet=None, dose=image_like(d, self.reference, np.float64),
                                    masks=self.last.masks, reference=self.reference, patient=self.patient_id,
                                    fraction=j)
            timings = {"kinetics_s": 0.0, "radiomics_s": 0.0, "texture_s": 0.0}
            fr, state = fraction_rows(ctx, j, images, state, timings)
            rows += fr
        ctx.warnings.clear()   # "no PET": expected, the forecast fills the PET columns
        return rows, state


def delivered_subset(cohort, patient_id, after):
    """The cohort as on the day fraction K was delivered: this patient, fractions 1..K (paths unchanged)."""
    from COMPASSLib.cohort import Cohort

    d = cohort.to_dict()
    d["patients"] = [p for p in d["patients"] if p["id"] == patient_id]
    for p in d["patients"]:
        p["fractions"] = [f for f in p["fractions"] if f["index"] <= after]
    return Cohort.from_dict(d, root=cohort.root)


def _delivered_rows(cohort, patient_id, after, settings, organs, cache_dir):
    from COMPASSLib.features.patient import extract_patient

    result = extract_patient(delivered_subset(cohort, patient_id, after), patient_id, settings,
                             cache_dir=str(cache_dir) if cache_dir else None, organs=organs)
    if result["error"]:
        raise FeatureError(f"features of the delivered fractions failed: {result['error']}", patient=patient_id)
    return result["rows"]


def _future_context(patient_id, organs, settings, delivered_rows):
    from COMPASSLib.features.fraction import PatientContext, make_extractors

    ctx = PatientContext(patient_id, list(organs), settings)
    ctx.extractors = {m: e for m, e in make_extractors(settings).items() if m not in ("ct", "pet")}
    for r in delivered_rows:   # shape from the first contour, as for delivered fractions
        ctx.shape.setdefault(r["organ"], {c: v for c, v in r.items() if c.startswith("shape_")})
    return ctx


def _with_forecast(delivered, future, forecast, draws, rng):
    """Row lists: the point forecast first, then `draws` residual draws (each a list of rows)."""
    import pandas as pd

    from COMPASSLib.twin.forecast import EXPOSURE_COLUMN, exposure

    cols = forecast.columns
    fut = pd.DataFrame(future)
    dlv = pd.DataFrame(delivered)
    point = {i: dict(r) for i, r in enumerate(future)}
    noisy = [{i: {} for i in range(len(future))} for _ in range(draws)]
    for organ, g in fut.groupby("organ", sort=False):
        d = dlv[dlv["organ"] == organ].sort_values("fraction")
        g = g.sort_values("fraction")
        x_all = exposure(np.concatenate([d[EXPOSURE_COLUMN].to_numpy(float), g[EXPOSURE_COLUMN].to_numpy(float)]))
        y = d.reindex(columns=cols).to_numpy(dtype=float)
        f = forecast.point(organ, x_all[:len(d)], y, x_all[len(d):])
        r = forecast.residual_draws(organ, len(g), draws, rng)
        for h, i in enumerate(g.index):
            point[i].update(zip(cols, f[h]))
            for m in range(draws):
                noisy[m][i] = dict(zip(cols, f[h] + r[m, h]))
    point_rows = [point[i] for i in range(len(future))]
    return point_rows, [[{**point[i], **noisy[m][i]} for i in range(len(future))] for m in range(draws)]


def _training_table(model, training):
    """The training feature table: a DataFrame, a features.csv path, or "auto" (MODEL/../features.csv,
    which `compass run` writes beside model/); None when there is none."""
    from pathlib import Path

    import pandas as pd

    if training is None or isinstance(training, pd.DataFrame):
        return training
    if training == "auto":   # beside a model folder, or beside the folder a twin was loaded from
        folder = Path(model) if isinstance(model, (str, Path)) else getattr(model, "path_", None)
        path = folder.resolve().parent / "features.csv" if folder is not None else None
    else:
        path = Path(training)
    if training == "auto" and (path is None or not path.is_file()):
        log.warning("no training features.csv beside the model: image-feature forecasts carry no residual "
                    "spread (the interval is the classifier's alone)")
        return None
    if not path.is_file():
        raise InputError("training feature table not found", file=path)
    return pd.read_csv(path)


def project(model, cohort, after, scenarios=None, *, planned=None, cache_dir=None, training="auto",
            draws=DEFAULT_DRAWS, seed=0, features=False, bed_of=(), progress=None):
    """The projection after fraction `after` of every patient of `cohort` (a Cohort or cohort.json path):
    a DataFrame in PROJECTION_COLUMNS + EXTRA_COLUMNS, one row per scenario, patient, organ and fraction
    (delivered fractions repeated in every scenario, `delivered` True). `model`: a model folder or a
    CompassTwin; `scenarios`: Scenario list (default as_planned only); `planned`: the course's planned
    number of fractions (default: the patient's fractions on file); `cache_dir`: the feature cache for the
    delivered fractions; `training`: see _training_table. `attrs["settings"]` records what was used.
    With `features`, returns (projection, feature table): the scored rows of the point forecast, every
    column of the twin's table, with a `scenario` column. With `bed_of` (organ names), returns
    (projection, images): {(scenario name, patient, organ): the organ's projected cumulative BED at the end
    of the course (projected_bed_image's image)} from the same course, so nothing is read twice."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.twin.forecast import ImageForecast, image_columns
    from COMPASSLib.twin.model import CompassTwin

    twin = model if isinstance(model, CompassTwin) else CompassTwin.load(model)
    scenarios = list(scenarios or [Scenario(AS_PLANNED)])
    check_scenarios(scenarios, twin.organs_)
    if features and bed_of:
        raise ValueError("project: ask for the feature table or the BED images, not both")
    for organ in bed_of:
        _known_organ(twin, organ)
    if len({s.name for s in scenarios}) != len(scenarios):
        raise InputError(f"scenario names repeat: {[s.name for s in scenarios]}")
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    fs, organs = twin.feature_settings(), twin.organs_
    training = _training_table(model, training)
    rng = np.random.default_rng(seed)
    rows, meta, images = [], {}, {}     # rows of pseudo-patients; pseudo id -> (scenario, patient, draw)
    for n, pid in enumerate(cohort.patient_ids):
        report(progress, n / len(cohort.patient_ids), f"patient {pid}: delivered fractions 1..{after}")
        course = Course(cohort, pid, after, fs, organs, planned)
        delivered = _delivered_rows(cohort, pid, after, fs, organs, cache_dir)
        columns = image_columns(sorted({c for r in delivered for c in r}))
        forecast = ImageForecast(after, columns, training)
        ctx = _future_context(pid, organs, fs, delivered)
        # the same residual draws in every scenario (common random numbers): a change against as planned
        # is then the scenario's own effect, not the difference of two independent noise samples
        patient_seed = int(rng.integers(2 ** 63))
        for s in scenarios:
            projected, state = course.future_rows(s, ctx)
            point, noisy = _with_forecast(delivered, projected, forecast, draws, np.random.default_rng(patient_seed))
            for m, future in enumerate([point] + noisy):
                key = f"w{len(meta)}"
                meta[key] = (s.name, pid, m)
                rows += [{**r, "patient": key} for r in delivered + future]
            images.update({(s.name, pid, o): _bed_image(course, state, o, s, fs) for o in bed_of})
    report(progress, 0.9, "scoring the projections")
    out, table = _score(twin, fs, rows, meta, after)
    out.attrs["settings"] = {
        "after": after, "planned": planned, "draws": draws, "seed": seed, "level": LEVEL,
        "scenarios": [dataclasses.asdict(s) for s in scenarios],
        "forecast": {"rule": "per-feature line in the organ's cumulative mean BED before the scan (twin.forecast)",
                     "residuals": "training trajectories" if training is not None else "none",
                     "columns": "ct_*, pet_* (and their _delta_ columns)"},
        "feature_settings": fs.to_dict()}
    report(progress, 1.0, "projected")
    return (out, table) if features else (out, images) if bed_of else out


def _score(twin, fs, rows, meta, after):
    import pandas as pd

    from COMPASSLib.features.table import assemble
    from COMPASSLib.twin.baselines import lkb_ntcp

    table = assemble(rows, fs)
    scored, members = twin.risk_ensemble(table)
    scored["draw"] = [meta[p][2] for p in scored["patient"]]
    scored["scenario"] = [meta[p][0] for p in scored["patient"]]
    scored["real"] = [meta[p][1] for p in scored["patient"]]
    group = scored.groupby(["scenario", "real", "organ", "fraction"], sort=False).indices
    point = scored[scored["draw"] == 0].copy()
    low, high = [], []
    a = (1 - LEVEL) / 2
    for i, r in zip(point.index, point.itertuples()):
        # delivered fractions: no forecast reaches them (causal encoder), the twin's own interval
        rows_of = [i] if r.fraction <= after else group[(r.scenario, r.real, r.organ, r.fraction)]
        pooled = members[rows_of].ravel()
        pooled = pooled[np.isfinite(pooled)]
        low.append(float(np.quantile(pooled, a)))
        high.append(float(np.quantile(pooled, 1 - a)))
    point["ci_low"], point["ci_high"] = low, high
    for column, values in zip(CHANGE_COLUMNS, _changes(point, scored, members, group, after)):
        point[column] = values
    keys = ["patient", "organ", "fraction"]
    feats = table[table["patient"].isin(set(point["patient"]))].copy()
    feats["lkb_ntcp"] = lkb_ntcp(feats)[0]
    out = point.merge(feats[keys + ["bed_mean_gy", "dvh_eqd2_mean_gy", "dvh_dose_mean_gy", "lkb_ntcp"]], on=keys,
                      how="left")
    thresholds = {o: p["threshold"] for p in twin.parts_ for o in p["organs"]}
    out = out.assign(patient=out["real"], delivered=out["fraction"] <= after,
                     eqd2_mean_gy=out["dvh_eqd2_mean_gy"], dose_mean_gy=out["dvh_dose_mean_gy"],
                     threshold=out["organ"].map(thresholds))
    out["warning"] = out["risk"] >= out["threshold"]
    order = {name: i for i, name in enumerate(dict.fromkeys(m[0] for m in meta.values()))}
    out = out.sort_values(["patient", "organ", "fraction"], kind="stable")
    out = out.iloc[np.argsort(out["scenario"].map(order).to_numpy(), kind="stable")]
    feats.insert(0, "scenario", [meta[p][0] for p in feats["patient"]])
    feats["patient"] = [meta[p][1] for p in feats["patient"]]
    return pd.DataFrame(out[PROJECTION_COLUMNS + EXTRA_COLUMNS]).reset_index(drop=True), feats.reset_index(drop=True)


def _changes(point, scored, members, group, after):
    """Each row's risk minus as planned's (same patient, organ, fraction) and the interval of that change:
    the LEVEL quantiles of the paired differences, member by member and draw by draw (the draws are the
    same in every scenario, `project`). 0 for delivered fractions; NaN where as planned was not projected."""
    a = (1 - LEVEL) / 2
    draw = scored["draw"].to_numpy()
    planned = {(r.real, r.organ, r.fraction): r.risk for r in point.itertuples() if r.scenario == AS_PLANNED}
    change, low, high = [], [], []
    for r in point.itertuples():
        base = planned.get((r.real, r.organ, r.fraction))
        if base is None:
            change.append(math.nan), low.append(math.nan), high.append(math.nan)
            continue
        if r.fraction <= after or r.scenario == AS_PLANNED:
            change.append(0.0), low.append(0.0), high.append(0.0)
            continue
        mine, theirs = (np.asarray(group[(name, r.real, r.organ, r.fraction)]) for name in (r.scenario, AS_PLANNED))
        mine, theirs = mine[np.argsort(draw[mine], kind="stable")], theirs[np.argsort(draw[theirs], kind="stable")]
        paired = (members[mine] - members[theirs]).ravel()
        paired = paired[np.isfinite(paired)]
        change.append(float(r.risk - base))
        low.append(float(np.quantile(paired, a)))
        high.append(float(np.quantile(paired, 1 - a)))
    return change, low, high


def projected_bed_image(model, cohort, patient_id, after, organ, scenario=None, planned=None):
    """The organ's projected cumulative BED at the end of the course under `scenario` (a Scenario, a
    "Heart=0.5" string or None for as planned): float32 SimpleITK image on the patient's grid, the organ's
    own alpha/beta in every voxel (features.organ_bed), FrameOfReferenceUID and alpha/beta as metadata."""
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.twin.model import CompassTwin

    twin = model if isinstance(model, CompassTwin) else CompassTwin.load(model)
    _known_organ(twin, organ)
    scenario = parse_scale(scenario) if isinstance(scenario, str) else (scenario or Scenario(AS_PLANNED))
    check_scenarios([scenario], twin.organs_)
    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    fs = twin.feature_settings()
    course = Course(cohort, patient_id, after, fs, twin.organs_, planned)
    return _bed_image(course, course.final_state(scenario), organ, scenario, fs)


def _known_organ(twin, organ) -> None:
    if organ not in twin.organs_:
        raise InputError(f"unknown organ {organ!r}; the twin knows {', '.join(twin.organs_)}")


def _bed_image(course, state, organ, scenario, fs):
    """The organ's cumulative BED in `state` (the running sums after the course's last fraction under
    `scenario`) as an image on the patient's grid, with its frame of reference and alpha/beta."""
    from COMPASSLib import resources
    from COMPASSLib.geometry import image_like

    image = image_like(state[f"bed_{organ}"], course.reference, np.float32)
    if course.reference.HasMetaDataKey("FrameOfReferenceUID"):
        image.SetMetaData("FrameOfReferenceUID", course.reference.GetMetaData("FrameOfReferenceUID"))
    image.SetMetaData("COMPASS_alpha_beta_gy", str(resources.alpha_beta(organ, fs.alpha_beta)))
    image.SetMetaData("COMPASS_scenario", scenario.name)
    return image


# the report projects at most this many warned patients (those with the highest risk): each costs the
# full feature code for every remaining fraction and scenario, whatever the cohort size
REPORT_PATIENTS = 8


def warned_projections(model, cohort, risk, sparing, *, cache_dir=None, training="auto", draws=DEFAULT_DRAWS,
                       seed=0, executor=None, progress=None, max_patients=REPORT_PATIENTS):
    """What the report shows for every warned organ: for each patient with a warning in `risk` (the final
    twin's per-fraction risk, risk.csv's columns), the rest of the course after the first warned fraction K
    (only where fractions remain after K), as planned and with each warned organ's remaining dose scaled by
    `sparing` (one scenario per organ, named as `compass whatif --scale` names it, e.g. "Heart=0.7").
    Each patient is a task of `executor` (COMPASSLib.executors; None: this process): give `model` and
    `training` as paths the workers can read. DataFrame as `project` returns, plus `after` (K); empty when
    no patient was warned before its last fraction. At most `max_patients` patients: those whose warned
    organs reach the highest risk."""
    import pandas as pd

    from COMPASSLib.cohort import Cohort
    from COMPASSLib.executors import using

    cohort = cohort if isinstance(cohort, Cohort) else Cohort.load(cohort)
    warned = risk[risk["warning"].astype(bool)]
    last = risk.groupby(risk["patient"].astype(str))["fraction"].max()
    tasks = []
    top = warned.groupby(warned["patient"].astype(str))["risk"].max().sort_values(ascending=False, kind="stable")
    for pid in sorted(top.index[:max_patients]):
        rows = warned[warned["patient"].astype(str) == pid]
        after = int(rows["fraction"].min())
        if after >= int(last[pid]):
            continue
        scenarios = [Scenario(AS_PLANNED)] + [parse_scale(f"{o}={sparing:g}") for o in sorted(set(rows["organ"]))]
        tasks.append((model, cohort.subset([pid]), after, scenarios, cache_dir, training, draws, seed))
    if not tasks:
        return pd.DataFrame(columns=PROJECTION_COLUMNS + EXTRA_COLUMNS + ["after"])
    frames, stats = [None] * len(tasks), []
    with using(scheduler=executor) as ex:
        for done in ex.run(_project_task, tasks, progress, "what if: {done}/{total} warned patients"):
            frames[done.index] = done.value
            stats.append(done.stats)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["task_stats"] = stats
    return out


def _project_task(model, cohort, after, scenarios, cache_dir, training, draws, seed):
    """One patient's projection (a task: one thread, as the folds, so every executor gives the same numbers)."""
    from COMPASSLib.executors import one_thread

    with one_thread():
        frame = project(model, cohort, after, scenarios, cache_dir=cache_dir, training=training, draws=draws,
                        seed=seed)
    return frame.assign(after=after)
