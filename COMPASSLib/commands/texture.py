"""`compass texture`: voxelwise texture maps (first-order, GLCM) of an image inside a mask, as NRRD."""
from __future__ import annotations

HELP = "voxelwise dose-texture maps (pyradiomics-equal first-order/GLCM) of an image inside a mask"
DESCRIPTION = (HELP + ". Writes one NRRD per feature (<class>_<Name>.nrrd, the image's geometry, "
               "0 outside the mask, NaN where a kernel has no GLCM pair) and texture_maps.json into OUT, "
               "all of them or (on an error) none: they are written beside OUT and moved in at the end.")


def add_arguments(parser):
    parser.add_argument("--image", required=True, help="image to map, e.g. a BED NRRD (Gy)")
    parser.add_argument("--mask", required=True, help="organ mask on the image's grid (nonzero = organ)")
    parser.add_argument("--features", default="glcm:Contrast,glcm:JointEntropy,firstorder:Entropy",
                        help="comma-separated class:Name list, class:* for all of a class "
                             "(classes: firstorder, glcm; names as pyradiomics)")
    parser.add_argument("--radius", type=int, default=1, help="kernel half-width in voxels (default 1)")
    parser.add_argument("--bin-width", type=float, required=True,
                        help="grey-level bin width in image units (edges on multiples of it)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads working on a map side by side (default: torch's thread count)")


def run(args) -> int:
    from COMPASSLib.atomic import check_output, staged_dir
    from COMPASSLib.errors import FeatureError, InputError
    from COMPASSLib.features.texture_maps import texture_maps, write_maps
    from COMPASSLib.provenance import sha256_file

    out = check_output(args.output, "output folder", staged=True)
    image = _read(args.image, "image")
    mask = _read(args.mask, "mask")
    if (image.GetSize() != mask.GetSize()
            or max(abs(a - b) for a, b in zip(image.GetSpacing(), mask.GetSpacing())) > 1e-4
            or max(abs(a - b) for a, b in zip(image.GetOrigin(), mask.GetOrigin())) > 1e-3
            or max(abs(a - b) for a, b in zip(image.GetDirection(), mask.GetDirection())) > 1e-6):
        raise InputError("mask is not on the image's grid (size, spacing, origin or direction differ); "
                         "resample it first", file=args.mask)
    try:
        maps = texture_maps(image, mask, args.features, radius=args.radius, bin_width=args.bin_width,
                            device=args.device, threads=args.threads)
    except FeatureError as e:
        raise e.at(file=args.image)
    settings = {"features": list(maps), "radius": args.radius, "bin_width": args.bin_width,
                "device": args.device, "kernel": "cube, voxel units, masked", "glcm": "symmetric, distance 1, "
                "13 directions averaged", "init_value": 0.0}
    inputs = {"image": {"path": str(args.image), "sha256": sha256_file(args.image)},
              "mask": {"path": str(args.mask), "sha256": sha256_file(args.mask)}}
    with staged_dir(out) as stage:   # every map and texture_maps.json, or none of them
        paths = [out / p.name for p in write_maps(maps, stage, settings, inputs)]
    for p in paths:
        print(p)
    return 0


def _read(path, what):
    import SimpleITK as sitk

    from COMPASSLib.errors import InputError

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(f"cannot read {what}: {str(e).strip().splitlines()[-1]}", file=path) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} must be a 3D scalar image", file=path)
    return image
