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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from COMPASSLib.allocator import hold_freed_memory
from COMPASSLib.errors import FeatureError
from COMPASSLib.geometry import is_image, like

if TYPE_CHECKING:
    import torch

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

    dtype = torch.float64 if dtype is None else dtype
    keys = parse_features(features)
    img, roi = _checked_arrays(image, mask, radius, bin_width)
    if spacing is None:
        spacing = image.GetSpacing() if is_image(image) else (1.0, 1.0, 1.0)
    device = _checked_device(device)

    step = _chunk_size(chunk_voxels, radius)
    workers = _worker_count(device, threads)
    _check_memory(roi, radius, len(keys), step, workers)
    box = _roi_box(img, roi, radius, bin_width, by_span=any(k.startswith("glcm:") for k in keys))
    inputs = _on_device(box, radius, device, dtype)
    wanted = {c: [k.split(":", 1)[1] for k in keys if k.startswith(c + ":")] for c in CLASSES}
    voxel_volume = float(np.prod(spacing))
    nvox = len(box.centres)
    results = {k: np.empty(nvox, dtype=np.float64) for k in keys}

    def run_chunk(start: int, stop: int) -> None:
        with torch.no_grad():                                   # grad mode is per thread
            chunk = _chunk_features(inputs, start, stop, wanted, voxel_array_shift=voxel_array_shift,
                                    voxel_volume=voxel_volume)
            for k in keys:
                results[k][start:stop] = chunk[k].to(torch.float64).cpu().numpy()

    bounds = [(a, min(a + step, nvox)) for a in range(0, nvox, step)]
    _run_chunks(run_chunk, bounds, nvox, workers=workers, cpu=device.type == "cpu", progress=progress)
    return _assembled_maps(results, box.coords, img.shape, init_value, image)


# --------------------------------------------------------------------------- steps of texture_maps

def _checked_arrays(image, mask, radius, bin_width):
    """(image array, ROI bool array) after checking the kernel radius, the bin width and the arrays
    (3D, one shape, a non-empty ROI, finite numbers inside it); FeatureError otherwise."""
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
    return img, roi


def _checked_device(device):
    """`device` as a torch.device; FeatureError for a name torch does not know, for CUDA where torch sees
    none and for a CUDA index beyond the devices present."""
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FeatureError(f"unknown torch device {device!r}: cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FeatureError("device 'cuda' asked for but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise FeatureError(f"device {str(device)!r} asked for, torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise FeatureError(f"device {str(device)!r}: texture maps run on cpu or cuda")
    return device


def _levels_and_ranks(img: np.ndarray, roi: np.ndarray, bin_width: float):
    """(levels, ranks, rank_values): the grey levels of the ROI, discretised once over the whole ROI
    (as pyradiomics), and the rank of every ROI value among the distinct ROI values `rank_values`
    (first order sorts these int32 ranks); both 0 outside the ROI."""
    levels = np.zeros(img.shape, dtype=np.int64)
    levels[roi] = discretise(img[roi], bin_width)
    rank_values, ranks_roi = np.unique(img[roi].astype(np.float64), return_inverse=True)
    ranks = np.zeros(img.shape, dtype=np.int32)
    ranks[roi] = ranks_roi.reshape(-1)
    return levels, ranks, rank_values


@dataclass(frozen=True)
class _RoiBox:
    """The ROI's bounding box padded by the kernel radius, so that every kernel lies inside the array
    (the padding is outside the ROI): ROI flags, grey levels, image values and value ranks of the
    padded box (0 outside the ROI), and the kernel centres (every ROI voxel) in the order they are
    computed in: flat indices into the padded box and (z, y, x) coordinates in the image."""
    roi: np.ndarray
    levels: np.ndarray
    values: np.ndarray
    ranks: np.ndarray
    rank_values: np.ndarray     # the ROI's distinct values, ascending (float64)
    centres: np.ndarray
    coords: tuple
    ng_max: int                 # highest grey level in the ROI (pyradiomics' Ng)
    roi_levels: int             # distinct grey levels in the ROI


def _roi_box(img: np.ndarray, roi: np.ndarray, radius: int, bin_width: float, *, by_span: bool) -> _RoiBox:
    """Discretise the ROI and cut out its padded bounding box (_RoiBox); with `by_span` the kernel
    centres are ordered by the span of grey levels of their kernels (for the GLCM)."""
    levels, ranks, rank_values = _levels_and_ranks(img, roi, bin_width)
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
    if by_span:
        # Kernels in order of the grey levels they span: the GLCM's histograms, marginal arrays and
        # MCC matrices of a chunk are as wide as its widest kernel, so the few steep-gradient
        # kernels then no longer widen those of the flat majority.
        span = _kernel_spans(p_lev, p_roi, radius)[zz - lo[0], yy - lo[1], xx - lo[2]]
        order = np.argsort(span, kind="stable")
        zz, yy, xx = zz[order], yy[order], xx[order]
    centres = np.ravel_multi_index((zz - lo[0] + radius, yy - lo[1] + radius, xx - lo[2] + radius), shape)
    return _RoiBox(roi=p_roi, levels=p_lev, values=p_val, ranks=p_rank, rank_values=rank_values,
                   centres=centres, coords=(zz, yy, xx), ng_max=ng_max, roi_levels=roi_levels)


@dataclass(frozen=True)
class _DeviceInputs:
    """A _RoiBox as flat tensors on the compute device, with the flat offsets of the kernel positions
    and the GLCM pair tables (_texture_torch.pair_tables): what every chunk reads."""
    roi: torch.Tensor
    levels: torch.Tensor
    values: torch.Tensor        # in the compute dtype
    ranks: torch.Tensor
    rank_values: torch.Tensor   # in the compute dtype
    offsets: torch.Tensor       # (S,) flat offsets of the kernel positions from the centre
    tables: list                # per direction group: (first, second) kernel positions of the pairs
    centres: torch.Tensor
    ng_max: int
    roi_levels: int
    dtype: object


def _on_device(box: _RoiBox, radius: int, device, dtype) -> _DeviceInputs:
    """The _DeviceInputs of `box` for kernels of half-width `radius` (values in `dtype`)."""
    import torch

    from COMPASSLib.features import _texture_torch as tt

    shape = box.roi.shape
    off_flat = tt.kernel_offsets(radius) @ np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    return _DeviceInputs(
        roi=torch.from_numpy(box.roi.ravel()).to(device),
        levels=torch.from_numpy(box.levels.ravel()).to(device),
        values=torch.from_numpy(box.values.ravel()).to(device=device, dtype=dtype),
        ranks=torch.from_numpy(box.ranks.ravel()).to(device),
        rank_values=torch.from_numpy(box.rank_values).to(device=device, dtype=dtype),
        offsets=torch.from_numpy(off_flat).to(device),
        tables=[(torch.tensor(f, device=device), torch.tensor(s, device=device))
                for f, s in tt.pair_tables(radius)],
        centres=torch.from_numpy(box.centres).to(device),
        ng_max=box.ng_max, roi_levels=box.roi_levels, dtype=dtype)


def _kernel_slots(radius: int) -> tuple:
    """(kernel positions, GLCM pairs over the 13 directions) of a cube of half-width `radius`, counted
    without building the tables: a direction with n non-zero components has (2r)^n (2r+1)^(3-n) pairs."""
    side = 2 * radius + 1
    pairs = 3 * (side - 1) * side ** 2 + 6 * (side - 1) ** 2 * side + 4 * (side - 1) ** 3
    return side ** 3, pairs


def _chunk_size(chunk_voxels: int | None, radius: int) -> int:
    """Kernel centres per chunk: `chunk_voxels`, or by default as many as fit the memory budget
    (_DEFAULT_CHUNK_BYTES) at _BYTES_PER_SLOT per kernel position or GLCM pair slot (both ways)."""
    if chunk_voxels is None:
        positions, pairs = _kernel_slots(radius)
        chunk_voxels = max(64, _DEFAULT_CHUNK_BYTES // (_BYTES_PER_SLOT * max(positions, 2 * pairs)))
    return int(chunk_voxels)


def _check_memory(roi: np.ndarray, radius: int, n_features: int, step: int, workers: int) -> None:
    """Refuse (FeatureError, COMPASSLib.memory) maps whose working memory would exceed the limit: the
    chunks in flight (`workers` chunks of `step` kernel centres, _BYTES_PER_SLOT per kernel position or
    pair slot), the pair tables, the padded ROI box (~64 bytes per voxel with its temporaries) and the
    maps themselves (float64, full grid, per feature)."""
    from COMPASSLib import memory

    nvox = int(np.count_nonzero(roi))
    positions, pairs = _kernel_slots(radius)
    slots = max(positions, 2 * pairs)
    zz, yy, xx = (np.flatnonzero(roi.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = [(axis[-1] - axis[0] + 1 + 2 * radius) for axis in (zz, yy, xx)]
    workers = min(workers, -(-nvox // step))          # chunks in flight at once
    estimate = (workers * min(step, nvox) * float(slots) * _BYTES_PER_SLOT + 16.0 * (2 * pairs + 3 * positions)
                + memory.grid_bytes(box, 64) + memory.grid_bytes(roi.shape, 8 * n_features) + 8.0 * nvox * n_features)
    memory.check(f"texture maps (kernel radius {radius}: {positions} positions and {pairs} GLCM pairs per kernel, "
                 f"{nvox} kernel centres, {workers} chunk(s) of {min(step, nvox)} in flight)", estimate,
                 hint="use a smaller kernel radius (--radius) or fewer threads", error=FeatureError)


def _chunk_features(inputs: _DeviceInputs, start: int, stop: int, wanted: dict, *,
                    voxel_array_shift: float, voxel_volume: float) -> dict:
    """{'class:Name': (stop - start,) tensor} for the kernel centres start:stop: their kernels'
    values, levels and ROI flags gathered as (V, S) tensors, then the features of each class."""
    from COMPASSLib.features import _texture_torch as tt

    idx = inputs.centres[start:stop, None] + inputs.offsets[None, :]      # (V, S)
    flat = idx.reshape(-1)
    inside = inputs.roi.index_select(0, flat).reshape(idx.shape)
    lev = inputs.levels.index_select(0, flat).reshape(idx.shape)
    chunk = {}
    if wanted["firstorder"]:
        fo = tt.firstorder(inputs.values.index_select(0, flat).reshape(idx.shape), lev, inside,
                           wanted["firstorder"], ranks=inputs.ranks.index_select(0, flat).reshape(idx.shape),
                           rank_values=inputs.rank_values,
                           voxel_array_shift=voxel_array_shift, voxel_volume=voxel_volume)
        chunk.update({f"firstorder:{n}": v for n, v in fo.items()})
    if wanted["glcm"]:
        gl = tt.glcm(lev, inside, inputs.tables, wanted["glcm"], ng_max=inputs.ng_max,
                     roi_levels=inputs.roi_levels, dtype=inputs.dtype)
        chunk.update({f"glcm:{n}": v for n, v in gl.items()})
    return chunk


def _worker_count(device, threads) -> int:
    """Threads working on chunks side by side: `threads` (default torch's thread count) on the CPU,
    1 on other devices.

    On the CPU the chunks run side by side on `threads` threads and every op on one thread: most
    of the work is many small ops and batched LAPACK calls, which torch's own (intra-op) threads
    barely speed up; and with chunk bounds and ops independent of the thread count, the maps are
    bitwise the same for any `threads`. Torch's thread setting is restored afterwards (_run_chunks)."""
    import torch

    if device.type != "cpu":
        return 1
    return max(1, int(threads) if threads is not None else torch.get_num_threads())


def _run_chunks(run_chunk, bounds: list, nvox: int, *, workers: int, cpu: bool, progress) -> None:
    """run_chunk(start, stop) for every (start, stop) of `bounds`, on `workers` threads (each op on
    one thread on the CPU: torch's thread count is 1 meanwhile, then restored). `progress` hears 0
    before the first chunk and the share of the `nvox` voxels done after each chunk, in the
    calling thread."""
    import torch

    from COMPASSLib.progress import report

    previous = torch.get_num_threads()
    report(progress, 0.0, f"texture maps: 0/{nvox} voxels")
    # freed chunk tensors stay in the heap for the next chunk (see COMPASSLib.allocator)
    with hold_freed_memory():
        try:
            if cpu:
                torch.set_num_threads(1)
            if workers == 1 or len(bounds) == 1:
                _run_serially(run_chunk, bounds, nvox, progress)
            else:
                _run_in_pool(run_chunk, bounds, nvox, workers, progress)
        finally:
            torch.set_num_threads(previous)


def _report_done(progress, done: int, nvox: int) -> None:
    from COMPASSLib.progress import report

    report(progress, done / nvox, f"texture maps: {done}/{nvox} voxels")


def _run_serially(run_chunk, bounds: list, nvox: int, progress) -> None:
    for a, b in bounds:
        run_chunk(a, b)
        _report_done(progress, b, nvox)


def _run_in_pool(run_chunk, bounds: list, nvox: int, workers: int, progress) -> None:
    """The chunks on a pool of `workers` threads, progress reported as they complete (any order);
    a cancel or a failed chunk cancels the chunks not yet started and is raised."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compass-texture") as pool:
        futures = {pool.submit(run_chunk, a, b): b - a for a, b in bounds}
        try:
            for future in as_completed(futures):
                future.result()
                done += futures[future]
                _report_done(progress, done, nvox)
        except BaseException:   # a cancel or a failed chunk: drop the chunks not started
            for future in futures:
                future.cancel()
            raise


def _assembled_maps(results: dict, coords: tuple, shape: tuple, init_value: float, image) -> dict:
    """{key: map}: each key's values (in the order of the kernel centres at `coords`) written into a
    full array of `shape` filled with `init_value` elsewhere, as an image like `image` when it is one."""
    out = {}
    for k, values in results.items():
        full = np.full(shape, init_value, dtype=np.float64)
        full[coords] = values
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
