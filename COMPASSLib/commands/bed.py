"""`compass bed`: cumulative BED (or EQD2) of per-fraction dose files, written as NRRD/NIfTI or DICOM RTDOSE."""
from __future__ import annotations

from pathlib import Path

HELP = "cumulative BED/EQD2 of per-fraction dose files (NRRD/NIfTI or DICOM RTDOSE out)"
DESCRIPTION = (
    "Cumulative biologically effective dose of the given per-fraction physical dose files "
    "(RTDOSE or NRRD/NIfTI in Gy), BED = sum over fractions of d (1 + d / (a/b)); with --eqd2 the "
    "equivalent dose in 2 Gy fractions. Doses on other grids are resampled (linearly) onto the first "
    "one's grid. -o OUT.dcm writes a DICOM RTDOSE (DoseType EFFECTIVE) sharing the first input RTDOSE's "
    "patient, study, frame of reference and plan; any other suffix is written by SimpleITK. A provenance "
    "JSON is written beside the output.")


def add_arguments(parser):
    parser.add_argument("doses", nargs="+", metavar="FRACTION_DOSE",
                        help="physical dose of each fraction, in delivery order (RTDOSE, NRRD or NIfTI, Gy)")
    parser.add_argument("--alpha-beta", type=float, required=True, metavar="AB",
                        help="alpha/beta of the tissue in Gy")
    parser.add_argument("--eqd2", action="store_true", help="write EQD2 instead of BED")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file: .nrrd, .nii(.gz), .mha, or .dcm for DICOM RTDOSE")


def provenance_path(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".provenance.json")


def _read_fraction_doses(paths):
    """Per-fraction dose images on the first one's grid (errors name the fraction)."""
    from COMPASSLib import io
    from COMPASSLib.geometry import resample_image, same_grid

    doses = []
    for k, path in enumerate(paths, start=1):
        image = io.read_volume([path], "dose", fraction=k)
        if doses and not same_grid(image, doses[0]):
            image = resample_image(image, doses[0])
        doses.append(image)
    return doses


def run(args) -> int:
    import SimpleITK as sitk

    from COMPASSLib import dose, io
    from COMPASSLib.atomic import atomic_path, write_json
    from COMPASSLib.errors import InputError
    from COMPASSLib.io.images import image_suffix
    from COMPASSLib.provenance import record, sha256_file

    inputs = [Path(p) for p in args.doses]
    for k, p in enumerate(inputs, start=1):
        if not p.is_file():
            raise InputError("dose file not found", file=p, fraction=k)
    output = Path(args.output)
    dicom_out = output.suffix.lower() == ".dcm"
    if not dicom_out and image_suffix(output) is None:
        raise InputError("output must end in .dcm (RTDOSE) or an image suffix such as .nrrd or .nii.gz",
                         file=output)

    fractions = _read_fraction_doses(inputs)
    result = dose.cumulative_bed(fractions, args.alpha_beta)[-1]
    quantity = "BED"
    if args.eqd2:
        result = dose.eqd2_from_bed(result, args.alpha_beta)
        quantity = "EQD2"

    if dicom_out:
        from COMPASSLib.io.rtdose_writer import write_rtdose

        template = next((p for p in inputs if io.dicom_modality(p) == "RTDOSE"), None)
        write_rtdose(result, output, quantity=quantity, alpha_beta_gy=args.alpha_beta, template=template,
                     comment=f"{quantity} (Gy) a/b {args.alpha_beta:g} Gy, {len(inputs)} fraction(s)")
    else:
        result.SetMetaData("COMPASS_quantity", quantity)
        result.SetMetaData("COMPASS_units", "Gy")
        result.SetMetaData("COMPASS_alpha_beta_gy", f"{args.alpha_beta:g}")
        result.SetMetaData("COMPASS_fractions", str(len(inputs)))
        with atomic_path(output) as tmp:
            sitk.WriteImage(result, str(tmp), useCompression=True)

    settings = {"quantity": quantity, "alpha_beta_gy": args.alpha_beta, "fractions": len(inputs),
                "repopulation": None, "grid": "first input dose (others resampled linearly)"}
    write_json(provenance_path(output), record(settings=settings,
                                               inputs={str(p): sha256_file(p) for p in inputs},
                                               output=str(output)))
    print(output)
    return 0
