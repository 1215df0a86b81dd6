"""`compass bed`: cumulative BED (or EQD2) of per-fraction dose files, written as NRRD/NIfTI or DICOM RTDOSE."""
from __future__ import annotations

from pathlib import Path

HELP = "cumulative BED/EQD2 of per-fraction dose files (NRRD/NIfTI or DICOM RTDOSE out)"
DESCRIPTION = (
    "Cumulative biologically effective dose of the given per-fraction physical dose files "
    "(RTDOSE or NRRD/NIfTI in Gy), BED = sum over fractions of d (1 + d / (a/b)); with --eqd2 the "
    "equivalent dose in 2 Gy fractions. With --structures (RTSTRUCT, labelmap or .seg.nrrd) the alpha/beta "
    "is voxelwise, as in the Slicer scene: each organ's own (Resources/organs.yaml, or --organ-alpha-beta), the "
    "smallest where organs overlap, and --alpha-beta (default: the BODY value) in tissue outside every organ; "
    "structures that are no known organ are listed in the provenance and count as that tissue. Doses on other grids are resampled (linearly) onto the first "
    "one's grid. -o OUT.dcm writes a DICOM RTDOSE (DoseType EFFECTIVE) sharing the first input RTDOSE's "
    "patient, study, frame of reference and plan; any other suffix is written by SimpleITK. A provenance "
    "JSON is written beside the output. The inputs must be one patient's: DICOM RTDOSE inputs (and an "
    "RTSTRUCT given with --structures) that disagree on PatientID or FrameOfReferenceUID are refused, naming "
    "both files and both values. NRRD/NIfTI doses carry no PatientID or FrameOfReferenceUID of their own "
    "(only a FrameOfReferenceUID/PatientID metadata field, as COMPASS writes them, is compared): "
    "for those, making sure they are one patient's is up to you.")


def add_arguments(parser):
    parser.add_argument("doses", nargs="+", metavar="FRACTION_DOSE",
                        help="physical dose of each fraction, in delivery order (RTDOSE, NRRD or NIfTI, Gy)")
    parser.add_argument("--alpha-beta", type=float, default=None, metavar="AB",
                        help="alpha/beta of the tissue in Gy (required without --structures; with it, the "
                             "alpha/beta outside every organ, default the BODY value of Resources/organs.yaml)")
    parser.add_argument("--structures", metavar="FILE", default=None,
                        help="organ contours (RTSTRUCT, labelmap or .seg.nrrd) for a voxelwise organ alpha/beta")
    parser.add_argument("--organ-alpha-beta", nargs="+", default=[], metavar="ORGAN=AB",
                        help="alpha/beta overrides per organ with --structures, e.g. Heart=2.5")
    parser.add_argument("--eqd2", action="store_true", help="write EQD2 instead of BED")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file: .nrrd, .nii(.gz), .mha, or .dcm for DICOM RTDOSE")


def provenance_path(output) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".provenance.json")


IDENTITY_KEYS = ("PatientID", "FrameOfReferenceUID")   # what one patient's fraction doses share


def _identity(image) -> dict:
    """PatientID / FrameOfReferenceUID of a dose image (RTDOSE metadata; NRRD fields where present)."""
    return {k: image.GetMetaData(k).strip() for k in IDENTITY_KEYS
            if image.HasMetaDataKey(k) and image.GetMetaData(k).strip()}


def _check_one_patient(identities) -> None:
    """identities: [(path, fraction or None, {key: value})]; InputError naming both files and values when two
    inputs disagree on PatientID or FrameOfReferenceUID (inputs without a value are not compared)."""
    from COMPASSLib.errors import InputError

    first = {}
    for path, k, ident in identities:
        for key, value in ident.items():
            if key not in first:
                first[key] = (path, value)
            elif first[key][1] != value:
                other, seen = first[key]
                raise InputError(f"inputs are not one patient's: {other} has {key} {seen!r}, {path} has {key} "
                                 f"{value!r}; a cumulative BED sums the fractions of one patient in one frame of "
                                 "reference", file=path, fraction=k)


def _read_fraction_doses(paths):
    """Per-fraction dose images on the first one's grid (errors name the fraction); all one patient's."""
    from COMPASSLib import io
    from COMPASSLib.io.fraction_dose import check_fraction_dose
    from COMPASSLib.geometry import resample_image, same_grid

    doses, identities = [], []
    for k, path in enumerate(paths, start=1):
        image = io.read_volume([path], "dose", fraction=k)
        check_fraction_dose(image, path, fraction=k)
        identities.append((path, k, _identity(image)))
        _check_one_patient(identities)
        if doses and not same_grid(image, doses[0]):
            image = resample_image(image, doses[0])
        doses.append(image)
    return doses, identities


def _structures_identity(path) -> dict:
    """PatientID / FrameOfReferenceUID of an RTSTRUCT ({} for labelmaps and .seg.nrrd)."""
    from COMPASSLib import io
    from COMPASSLib.io.images import image_suffix

    if image_suffix(path) is not None or io.dicom_modality(path) != "RTSTRUCT":
        return {}
    from COMPASSLib.io.dicom_series import read_dataset
    from COMPASSLib.io.rtstruct import structure_frame_of_reference

    ds = read_dataset(path, stop_before_pixels=True)
    ident = {"PatientID": str(ds.get("PatientID", "")).strip(),
             "FrameOfReferenceUID": structure_frame_of_reference(ds).strip()}
    return {k: v for k, v in ident.items() if v}


def _organ_overrides(items) -> dict:
    from COMPASSLib.errors import InputError
    from COMPASSLib.resources import canonical_organ

    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[canonical_organ(name.strip()) or name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--organ-alpha-beta takes ORGAN=AB (Gy), got {item!r}") from None
    return out


def _alpha_beta(args, reference):
    """(alpha/beta for dose.cumulative_bed, its description, the organ-map settings or None)."""
    from COMPASSLib import dose, io, resources
    from COMPASSLib.errors import InputError

    if args.structures is None:
        if args.alpha_beta is None:
            raise InputError("give --alpha-beta AB (Gy), or --structures FILE for organ alpha/beta")
        if args.organ_alpha_beta:
            raise InputError("--organ-alpha-beta needs --structures")
        return args.alpha_beta, f"{args.alpha_beta:g} Gy", None
    overrides = _organ_overrides(args.organ_alpha_beta)
    masks = io.read_structures([args.structures], reference)
    known = {n: m for n, m in masks.items() if (resources.canonical_organ(n) or n) in resources.organ_table()
             or n in overrides or resources.canonical_organ(n) in overrides}
    background = args.alpha_beta if args.alpha_beta is not None else resources.alpha_beta("BODY", overrides)
    overrides.setdefault("BODY", background)   # body tissue outside the organs is that tissue too
    ab = dose.alpha_beta_map(known, reference, overrides, default_gy=background)
    organs = {n: resources.alpha_beta(resources.canonical_organ(n) or n, overrides) if n not in overrides
              else overrides[n] for n in known}
    return ab, "organ map", {"organ_alpha_beta_gy": organs, "background_alpha_beta_gy": background,
                             "structures_not_organs": sorted(set(masks) - set(known)),
                             "overlap_rule": "smallest alpha/beta of the overlapping organs; envelope "
                                             "structures (BODY) never win over an organ"}


def run(args) -> int:
    import SimpleITK as sitk

    from COMPASSLib import dose, io
    from COMPASSLib.atomic import atomic_path, check_output, write_json
    from COMPASSLib.errors import InputError
    from COMPASSLib.io.images import image_suffix
    from COMPASSLib.provenance import record, sha256_file

    inputs = [Path(p) for p in args.doses]
    output = Path(args.output)
    dicom_out = output.suffix.lower() == ".dcm"
    if not dicom_out and image_suffix(output) is None:
        raise InputError("output must end in .dcm (RTDOSE) or an image suffix such as .nrrd or .nii.gz",
                         file=output)
    check_output(output, "output file", folder=False)
    check_output(provenance_path(output), "provenance file beside the output", folder=False)
    for k, p in enumerate(inputs, start=1):
        if not p.is_file():
            raise InputError("dose file not found", file=p, fraction=k)
    for p in inputs + ([Path(args.structures)] if args.structures else []):
        if output.exists() and p.exists() and output.samefile(p):
            raise InputError("the output would overwrite an input (inputs are never modified)", file=output)

    fractions, identities = _read_fraction_doses(inputs)
    if args.structures is not None and Path(args.structures).is_file():
        _check_one_patient(identities + [(Path(args.structures), None, _structures_identity(args.structures))])
    alpha_beta, described, map_settings = _alpha_beta(args, fractions[0])
    result = dose.cumulative_bed(fractions, alpha_beta)[-1]
    quantity = "BED"
    if args.eqd2:
        result = dose.eqd2_from_bed(result, alpha_beta)
        quantity = "EQD2"

    if dicom_out:
        from COMPASSLib.io.rtdose_writer import write_rtdose

        template = next((p for p in inputs if io.dicom_modality(p) == "RTDOSE"), None)
        write_rtdose(result, output, quantity=quantity,
                     alpha_beta_gy=args.alpha_beta if map_settings is None else described, template=template,
                     comment=f"{quantity} (Gy) a/b {described}, {len(inputs)} fraction(s)")
    else:
        result.SetMetaData("COMPASS_quantity", quantity)
        result.SetMetaData("COMPASS_units", "Gy")
        result.SetMetaData("COMPASS_alpha_beta_gy", f"{args.alpha_beta:g}" if map_settings is None else described)
        result.SetMetaData("COMPASS_fractions", str(len(inputs)))
        with atomic_path(output) as tmp:
            sitk.WriteImage(result, str(tmp), useCompression=True)

    settings = {"quantity": quantity, "alpha_beta_gy": args.alpha_beta if map_settings is None else "organ map",
                "fractions": len(inputs), "repopulation": None, "grid": "first input dose (others resampled linearly)",
                **(map_settings or {})}
    sources = inputs + ([Path(args.structures)] if args.structures else [])
    write_json(provenance_path(output), record(settings=settings,
                                               inputs={str(p): sha256_file(p) for p in sources},
                                               output=str(output)))
    print(output)
    return 0
