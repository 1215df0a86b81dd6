"""Voxelwise dose-texture maps: first-order and GLCM features of a cubic kernel around every ROI voxel.

The numbers are pyradiomics' voxel-based extraction (`voxelBased=True`, `kernelRadius`, `binWidth`,
masked kernel, symmetrical GLCM at distance 1 averaged over 13 directions), computed in PyTorch on the
CPU or a CUDA device with the same code. Conventions, all as pyradiomics 3.0.1:

* grey levels are made once per ROI with fixed bin width: edges on whole multiples of the bin width
  (pyradiomics' `getBinEdges`), half-open bins (`numpy.digitize`);
* the kernel is a cube of (2r+1)^3 voxels (voxel units, not mm); only ROI voxels count, and a GLCM
  pair counts when both voxels lie in the ROI and in the kernel;
* each of the 13 directions gives a symmetric matrix normalised on its own; directions without
  pairs are dropped from the average; entropies use log2(p + eps), eps = numpy.spacing(1);
* voxels outside the ROI get `init_value` (pyradiomics' `initValue`, 0); ROI voxels whose kernel has
  no pair at all get NaN in the GLCM maps.

The result is equal to pyradiomics to rounding (see docs/texture_maps.md and
Testing/test_texture_maps.py); per voxel on one CPU thread it is 14-1460x faster than pyradiomics
for the full GLCM class and 36-157x for first order, more the more grey levels and the larger the
ROI (Testing/Benchmarks/bench_texture_maps.py, docs/texture_maps.md).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from COMPASSLib.allocator import hold_freed_memory
from COMPASSLib.errors import FeatureError
from COMPASSLib.geometry import is_image, like

log = logging.getLogger(__name__)

CLASSES = ("firstorder", "glcm")
# Rough bytes of working memory per kernel centre and kernel/pair slot; sets the default chunk size.
_BYTES_PER_SLOT = 8 * 24
_DEFAULT_CHUNK_BYTES = 256 * 2 ** 20


def available_features() -> dict:
    """{'firstorder': (...), 'glcm': (...)}: the feature names texture_maps accepts (pyradiomics' names)."""
    from COMPASSLib.features._texture_torch import FIRSTORDER_FEATURES, GLCM_FEATURES

    return {"firstorder": FIRSTORDER_FEATURES, "glcm": GLCM_FEATURES}


def parse_features(features) -> list[str]:
    """Expand 'glcm:Contrast', 'glcm:*', 'firstorder:*' (a list or one comma-separated string) into
    a list of 'class:Name' keys, in the order given, without duplicates."""
    if isinstance(features, str):
        features = [f for f in features.split(",") if f.strip()]
    known = available_features()
    out: list[str] = []
    for spec in features:
        spec = spec.strip()
        cls, sep, name = spec.partition(":")
        cls = cls.strip().lower()
        name = name.strip()
        if not sep or cls not in known:
            raise FeatureError(f"unknown texture feature {spec!r}: write class:Name with class one of "
                               f"{', '.join(CLASSES)} (e.g. glcm:Contrast, firstorder:*)")
        names = known[cls] if name == "*" else (name,)
        for n in names:
            if n not in known[cls]:
                raise FeatureError(f"unknown {cls} feature {n!r}; known: {', '.join(known[cls])}")
            key = f"{cls}:{n}"
            if key not in out:
                out.append(key)
    if not out:
        raise FeatureError("no texture feature requested")
    return out


def _as_array(x, what: str) -> np.ndarray:
    if is_image(x):
        import SimpleITK as sitk

        return sitk.GetArrayFromImage(x)
    arr = np.asarray(x)
    if arr.dtype == object:
        raise FeatureError(f"{what} is not a numeric array or SimpleITK image")
    return arr


def discretise(values: np.ndarray, bin_width: float) -> np.ndarray:
    """Grey levels 1.. of ROI values with pyradiomics' fixed-bin-width edges (absolute multiples of
    the bin width, half-open bins). Only the ROI minimum and maximum fix the edges, so pyradiomics'
    own edge function is called on those two values (same dtype, same arithmetic)."""
    from radiomics.imageoperations import getBinEdges

    extremes = np.array([values.min(), values.max()], dtype=values.dtype)
    edges = getBinEdges(extremes, binWidth=bin_width)
    return np.digitize(values, edges).astype(np.int64)


def texture_maps(image, mask, features, radius: int = 1, bin_width: float = 25.0, device="cpu",
                 dtype=None, chunk_voxels: int | None = None, progress=None, *, init_value: float = 0.0,
                 voxel_array_shift: float = 0.0, spacing=None, threads: int | None = None) -> dict:
    """Feature maps of `image` inside `mask` over a cubic kernel of half-width `radius` voxels.

    image, mask: numpy arrays (z, y, x) or SimpleITK images on the same grid (mask: nonzero = ROI).
    features: e.g. ["glcm:Contrast", "glcm:JointEntropy", "firstorder:Entropy"], "glcm:*".
    Returns {'glcm:Contrast': map, ...}: float64 numpy arrays, or SimpleITK images with the image's
    geometry when `image` is one. `device` is any torch device ('cpu', 'cuda', 'cuda:1');
    `dtype` the torch float type (float64 by default; float32 is faster and less exact);
    `chunk_voxels` bounds memory (kernel centres per chunk; default from a 256 MiB budget per
    chunk in flight); `progress` (COMPASSLib.progress protocol) hears 0 before the first chunk and the
    share of voxels done after each chunk (in the calling thread), and may cancel; `threads`: CPU threads working on chunks side by side, each op on
    one thread (default: torch's thread count; torch's own setting is left as it was; the maps are
    bitwise the same for any number).
    `voxel_array_shift` is pyradiomics' voxelArrayShift (Energy, TotalEnergy, RootMeanSquared);
    `spacing` (x, y, z mm) for TotalEnergy with numpy input (taken from the image otherwise)."""
    import torch

    from COMPASSLib.features import _texture_torch as tt

    dtype = torch.float64 if dtype is None else dtype
    keys = parse_features(features)
    if not isinstance(radius, (int, np.integer)) or radius < 1:
        raise FeatureError(f"kernel radius must be a whole number of voxels >= 1, got {radius!r}")
    if not (bin_width > 0 and np.isfinite(bin_width)):
        raise FeatureError(f"bin width must be a positive number, got {bin_width!r}")
    img = _as_array(image, "image")
    roi = _as_array(mask, "mask") != 0
    if img.ndim != 3 or roi.shape != img.shape:
        raise FeatureError(f"image and mask must be 3D arrays of one shape, got {img.shape} and {roi.shape}")
    if not roi.any():
        raise FeatureError("the mask is empty: no voxel to compute a texture map on")
    if not np.issubdtype(img.dtype, np.number) or not np.isfinite(img[roi]).all():
        raise FeatureError("the image has non-finite or non-numeric values inside the mask")
    if spacing is None:
        spacing = image.GetSpacing() if is_image(image) else (1.0, 1.0, 1.0)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FeatureError("device 'cuda' asked for but torch sees no CUDA device")

    # Discretise once over the whole ROI (as pyradiomics), then work in the ROI's bounding box padded
    # by the radius, so that every kernel lies inside the array (padding is outside the ROI).
    levels = np.zeros(img.shape, dtype=np.int64)
    levels[roi] = discretise(img[roi], bin_width)
    # rank of every ROI value among the distinct ROI values: first order sorts these int32 ranks
    rank_values, ranks_roi = np.unique(img[roi].astype(np.float64), return_inverse=True)
    ranks = np.zeros(img.shape, dtype=np.int32)
    ranks[roi] = ranks_roi.reshape(-1)
    ng_max = int(levels[roi].max())
    roi_levels = len(np.unique(levels[roi]))
    zz, yy, xx = np.nonzero(roi)
    lo = np.array([zz.min(), yy.min(), xx.min()])
    hi = np.array([zz.max(), yy.max(), xx.max()]) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pad = ((radius, radius),) * 3
    p_roi = np.pad(roi[box], pad, constant_values=False)
    p_lev = np.pad(levels[box], pad, constant_values=0)
    p_val = np.pad(img[box].astype(np.float64), pad, constant_values=0.0)
    p_rank = np.pad(ranks[box], pad, constant_values=0)
    shape = p_roi.shape
    if any(k.startswith("glcm:") for k in keys):
        # Kernels in order of the grey levels they span: the GLCM's histograms, marginal arrays and
        # MCC matrices of a chunk are as wide as its widest kernel, so the few steep-gradient
        # kernels then no longer widen those of the flat majority.
        span = _kernel_spans(p_lev, p_roi, radius)[zz - lo[0], yy - lo[1], xx - lo[2]]
        order = np.argsort(span, kind="stable")
        zz, yy, xx = zz[order], yy[order], xx[order]
    centres = np.ravel_multi_index((zz - lo[0] + radius, yy - lo[1] + radius, xx - lo[2] + radius), shape)

    offs = tt.kernel_offsets(radius)
    off_flat = offs @ np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    S = len(offs)
    tables = tt.pair_tables(radius)
    wanted = {c: [k.split(":", 1)[1] for k in keys if k.startswith(c + ":")] for c in CLASSES}

    t_roi = torch.from_numpy(p_roi.ravel()).to(device)
    t_lev = torch.from_numpy(p_lev.ravel()).to(device)
    t_val = torch.from_numpy(p_val.ravel()).to(device=device, dtype=dtype)
    t_rank = torch.from_numpy(p_rank.ravel()).to(device)
    t_rank_values = torch.from_numpy(rank_values).to(device=device, dtype=dtype)
    t_off = torch.from_numpy(off_flat).to(device)
    t_tables = [(torch.tensor(f, device=device), torch.tensor(s, device=device)) for f, s in tables]
    t_centres = torch.from_numpy(centres).to(device)

    nvox = len(centres)
    if chunk_voxels is None:
        slots = max(S, 2 * sum(f.size for f, _ in tables))
        chunk_voxels = max(64, _DEFAULT_CHUNK_BYTES // (_BYTES_PER_SLOT * slots))
    chunk_voxels = int(chunk_voxels)
    results = {k: np.empty(nvox, dtype=np.float64) for k in keys}
    voxel_volume = float(np.prod(spacing))

    def run_chunk(start: int, stop: int) -> None:
        with torch.no_grad():                                   # grad mode is per thread
            idx = t_centres[start:stop, None] + t_off[None, :]      # (V, S)
            flat = idx.reshape(-1)
            inside = t_roi.index_select(0, flat).reshape(idx.shape)
            lev = t_lev.index_select(0, flat).reshape(idx.shape)
            chunk = {}
            if wanted["firstorder"]:
                fo = tt.firstorder(t_val.index_select(0, flat).reshape(idx.shape), lev, inside,
                                   wanted["firstorder"], ranks=t_rank.index_select(0, flat).reshape(idx.shape),
                                   rank_values=t_rank_values,
                                   voxel_array_shift=voxel_array_shift, voxel_volume=voxel_volume)
                chunk.update({f"firstorder:{n}": v for n, v in fo.items()})
            if wanted["glcm"]:
                gl = tt.glcm(lev, inside, t_tables, wanted["glcm"], ng_max=ng_max, roi_levels=roi_levels,
                             dtype=dtype)
                chunk.update({f"glcm:{n}": v for n, v in gl.items()})
            for k in keys:
                results[k][start:stop] = chunk[k].to(torch.float64).cpu().numpy()

    # On the CPU the chunks run side by side on `threads` threads and every op on one thread: most
    # of the work is many small ops and batched LAPACK calls, which torch's own (intra-op) threads
    # barely speed up; and with chunk bounds and ops independent of the thread count, the maps are
    # bitwise the same for any `threads`. Torch's thread setting is restored afterwards.
    cpu = device.type == "cpu"
    workers = max(1, int(threads) if threads is not None else torch.get_num_threads()) if cpu else 1
    bounds = [(a, min(a + chunk_voxels, nvox)) for a in range(0, nvox, chunk_voxels)]
    previous = torch.get_num_threads()
    from COMPASSLib.progress import report

    report(progress, 0.0, f"texture maps: 0/{nvox} voxels")
    # freed chunk tensors stay in the heap for the next chunk (see COMPASSLib.allocator)
    with hold_freed_memory():
        try:
            if cpu:
                torch.set_num_threads(1)
            if workers == 1 or len(bounds) == 1:
                for a, b in bounds:
                    run_chunk(a, b)
                    report(progress, b / nvox, f"texture maps: {b}/{nvox} voxels")
            else:
                from concurrent.futures import ThreadPoolExecutor, as_completed

                done = 0
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compass-texture") as pool:
                    futures = {pool.submit(run_chunk, a, b): b - a for a, b in bounds}
                    try:
                        for future in as_completed(futures):
                            future.result()
                            done += futures[future]
                            report(progress, done / nvox, f"texture maps: {done}/{nvox} voxels")
                    except BaseException:   # a cancel or a failed chunk: drop the chunks not started
                        for future in futures:
                            future.cancel()
                        raise
        finally:
            torch.set_num_threads(previous)

    out = {}
    for k in keys:
        full = np.full(img.shape, init_value, dtype=np.float64)
        full[zz, yy, xx] = results[k]
        out[k] = like(full, image)
    return out


def _kernel_spans(levels: np.ndarray, roi: np.ndarray, radius: int) -> np.ndarray:
    """Highest minus lowest ROI grey level in the kernel around every voxel of the padded box,
    returned for the unpadded box (index it with ROI coordinates relative to the box)."""
    from scipy import ndimage

    size = 2 * radius + 1
    big = np.iinfo(levels.dtype).max
    top = ndimage.maximum_filter(np.where(roi, levels, -1), size=size, mode="constant", cval=-1)
    low = ndimage.minimum_filter(np.where(roi, levels, big), size=size, mode="constant", cval=big)
    inner = (slice(radius, -radius),) * 3
    return np.maximum(top[inner] - low[inner], 0)


def summarise_map(feature_map, mask, percentiles=(10, 50, 90)) -> dict:
    """Summary statistics of a texture map inside the mask, for the twin's feature table:
    {'mean': .., 'std': .., 'p10': .., 'p50': .., 'p90': ..} over the finite ROI values
    (NaN kernels without pairs are left out; all NaN when none is finite)."""
    values = _as_array(feature_map, "texture map")
    roi = _as_array(mask, "mask") != 0
    if values.shape != roi.shape:
        raise FeatureError(f"texture map and mask differ in shape: {values.shape} vs {roi.shape}")
    v = values[roi].astype(np.float64)
    v = v[np.isfinite(v)]
    out = {"mean": float(v.mean()) if v.size else float("nan"),
           "std": float(v.std()) if v.size else float("nan")}
    for q in percentiles:
        out[f"p{q:g}"] = float(np.percentile(v, q)) if v.size else float("nan")
    return out


def map_filename(key: str) -> str:
    """'glcm:Contrast' -> 'glcm_Contrast.nrrd'."""
    return key.replace(":", "_") + ".nrrd"


def write_maps(maps: dict, out_dir, settings: dict, inputs: dict | None = None) -> list[Path]:
    """Write each map (SimpleITK image) as `<class>_<Name>.nrrd` in out_dir, atomically, and a
    provenance JSON `texture_maps.json` beside them. Returns the written map paths."""
    import SimpleITK as sitk

    from COMPASSLib import atomic, provenance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, im in maps.items():
        if not is_image(im):
            raise FeatureError(f"map {key} has no geometry (pass SimpleITK images to write it)")
        path = out_dir / map_filename(key)
        with atomic.atomic_path(path) as tmp:
            sitk.WriteImage(im, str(tmp), True)
        paths.append(path)
    atomic.write_json(out_dir / "texture_maps.json",
                      provenance.record(settings, inputs, outputs=[p.name for p in paths]))
    return paths


def organ_texture_maps(image, masks: dict, features, *, organs=None, radius: int = 1,
                       bin_width: float = 25.0, device="cpu", out_dir=None, patient=None,
                       fraction=None, **kwargs) -> dict:
    """Texture maps of one image (e.g. the cumulative BED after a fraction) for chosen organs.

    masks: {organ: mask image}; organs: the organs to map (all by default). Returns
    {organ: {feature key: map}}; with `out_dir`, also writes `out_dir/<organ>/<class>_<Name>.nrrd`
    with provenance. Errors name the patient, fraction and organ."""
    chosen = list(masks) if organs is None else list(organs)
    out = {}
    for organ in chosen:
        if organ not in masks:
            raise FeatureError(f"no mask for organ {organ!r} (have: {', '.join(masks)})",
                               patient=patient, fraction=fraction)
        try:
            maps = texture_maps(image, masks[organ], features, radius=radius, bin_width=bin_width,
                                device=device, **kwargs)
        except FeatureError as e:
            e.message = f"{organ}: {e.message}"
            raise e.at(patient=patient, fraction=fraction)
        out[organ] = maps
        if out_dir is not None:
            settings = {"organ": organ, "features": list(maps), "radius": radius, "bin_width": bin_width,
                        "device": str(device), "patient": patient, "fraction": fraction}
            write_maps(maps, Path(out_dir) / organ, settings)
    return out
