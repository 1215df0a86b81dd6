"""A seeded DICOM header mutator (test helper; no dependency beyond pydicom and the standard library).

`draw(ds, rng, focus)` picks one mutation of a dataset: an element anywhere (top level, inside sequence
items, the file meta), chosen among the keywords the COMPASS reader of that modality reads (`focus`) three
times in four, any element otherwise, and one of
- drop       the element is deleted;
- duplicate  the element is copied into a sequence item (or a sequence item is appended twice);
- retype     the value is replaced by raw bytes of the wrong kind: text in a numeric VR, the wrong number
             of values (VM), an empty value, binary garbage, a binary value of the wrong length;
- truncate   a value cut short: half a string, values missing from a multi-valued element, sequence items
             removed, pixel data cut to half, to an odd length or to nothing;
- misvalue   a well-formed but wrong value: negative, zero, NaN, infinite, huge or tiny numbers, wrong codes
             (units, modality, decay correction), impossible dates and times, 0 or 65535 rows.
`apply(ds, mutation)` performs it (also on the other slices of a series, whose elements sit at the same
path). Values are written as raw elements, so what reaches the reader is what pydicom parses from the
bytes of a real file, with pydicom's reading validation as it is configured (warnings, no exceptions).
"""
from __future__ import annotations

import copy
import math
import struct
from dataclasses import dataclass

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.datadict import keyword_for_tag
from pydicom.sequence import Sequence
from pydicom.tag import Tag

OPS = ("drop", "duplicate", "retype", "truncate", "misvalue")
META = "file_meta"

COMMON = ("Modality", "SOPClassUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID", "ImagePositionPatient",
          "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns", "BitsAllocated",
          "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation", "PixelData",
          "RescaleSlope", "RescaleIntercept", "NumberOfFrames", "TransferSyntaxUID", "InstanceNumber")
FOCUS = {
    "CT": COMMON,
    "PT": COMMON + ("Units", "DecayCorrection", "PatientWeight", "RadiopharmaceuticalInformationSequence",
                    "RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
                    "RadiopharmaceuticalStartDateTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
                    "AcquisitionTime"),
    "RTDOSE": COMMON + ("DoseUnits", "DoseType", "DoseSummationType", "DoseGridScaling", "GridFrameOffsetVector",
                        "FrameIncrementPointer", "DVHSequence", "DVHType", "DVHDoseScaling", "DVHVolumeUnits",
                        "DVHData", "DVHReferencedROISequence", "ReferencedROINumber"),
    "RTSTRUCT": ("Modality", "SOPClassUID", "FrameOfReferenceUID", "TransferSyntaxUID", "StructureSetROISequence",
                 "ROINumber", "ROIName", "ReferencedFrameOfReferenceUID", "ROIContourSequence", "ReferencedROINumber",
                 "ContourSequence", "ContourGeometricType", "NumberOfContourPoints", "ContourData",
                 "ReferencedFrameOfReferenceSequence", "RTReferencedStudySequence"),
}

TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
BINARY = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d", "AT": "<HH"}
WRONG_TEXT = (b"abc", b"1\\2\\3\\4\\5\\6\\7", b"", b"\x01\x02\xff\xfe", b"1/2", b"12:30", b"-", b"+1e9999",
              b"0x10", b"1,5", b"\\", b"1\\", b"NaN\\NaN", b"A" * 300)
NUMBERS = (-1, 0, -0.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-308, 65535, 2 ** 31 - 1, 4294967295, 1e9, -2.5)
CODES = (b"CNTS", b"MGY", b"RELATIVE", b"NONE", b"", b"gy", b"XX", b"MR", b"RTPLAN", b"BQML", b"GML", b"CGY",
         b"ADMIN", b"START", b"EFFECTIVE", b"PLAN", b"OPEN_PLANAR", b"POINT", b"RGB", b"MONOCHROME1")
DATES = (b"99999999", b"20261340", b"2460", b"abc", b"1900", b"", b"20260105", b"19700101000000")


@dataclass
class Mutation:
    op: str
    path: tuple         # ((sequence tag, item index), ..., element tag); first step META for the file meta
    payload: object     # op-specific
    text: str           # one-line description for the report

    def __str__(self) -> str:
        return self.text


class Element:
    """What the mutator needs of an element without converting its value (pydicom converts a raw element
    on access, slowly for long DS lists): tag, VR, keyword, VM and the raw bytes (or the Sequence)."""

    def __init__(self, holder, tag):
        raw = holder._dict[tag]
        self.tag = Tag(tag)
        self.VR = raw.VR or _dictionary_vr(self.tag)
        if self.VR == "SQ" or not isinstance(raw, RawDataElement):
            value = holder[tag].value        # a sequence must be parsed to be walked
            self.VR = holder[tag].VR
        else:
            value = raw.value
        self.value = value
        self.keyword = keyword_for_tag(self.tag) or ""
        if isinstance(value, bytes):
            self.VM = 0 if not value.strip(b" \0") else (value.count(b"\\") + 1 if self.VR in TEXT_VRS else 1)
        elif isinstance(value, (list, tuple, Sequence)):
            self.VM = len(value)
        else:
            self.VM = 0 if value in (None, "") else 1


def _dictionary_vr(tag) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _walk(ds, prefix=()):
    """(path, Element) of every element of `ds` and of its sequence items, depth first."""
    for tag in list(ds.keys()):
        try:
            elem = Element(ds, tag)
        except Exception:   # noqa: BLE001 - an element pydicom cannot parse is left alone
            continue
        yield prefix + (elem.tag,), elem
        if elem.VR == "SQ" and isinstance(elem.value, Sequence):
            for i, item in enumerate(elem.value):
                yield from _walk(item, prefix + ((elem.tag, i),))


def elements(ds):
    out = list(_walk(ds))
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        out += [((META,) + p, e) for p, e in _walk(meta)]
    return out


def container(ds, path):
    """The dataset holding the element at `path`, or None when the path no longer resolves."""
    node = ds
    for step in path[:-1]:
        if step == META:
            node = getattr(node, "file_meta", None)
        else:
            tag, i = step
            elem = node.get(tag) if isinstance(node, Dataset) and tag in node else None
            if elem is None or not isinstance(elem.value, Sequence) or i >= len(elem.value):
                return None
            node = elem.value[i]
        if node is None:
            return None
    return node


def _name(path) -> str:
    parts = []
    for step in path:
        if step == META:
            parts.append("file_meta")
        elif isinstance(step, tuple):
            parts.append(f"{keyword_for_tag(step[0]) or step[0]}[{step[1]}]")
        else:
            parts.append(keyword_for_tag(step) or str(Tag(step)))
    return ".".join(parts)


def _even(value: bytes, vr) -> bytes:
    return value + (b"\0" if vr == "UI" else b" ") if len(value) % 2 else value


def _number_text(x, vr) -> bytes:
    if vr == "IS":
        return (str(int(x)) if math.isfinite(x) else str(x)).encode()
    return repr(float(x)).encode() if math.isfinite(x) else str(x).encode()


def _binary_value(x, vr) -> bytes:
    fmt = BINARY.get(vr, "<H")
    if vr in ("FL", "FD"):
        return struct.pack(fmt, float(x))
    if not math.isfinite(x):
        x = 0
    x = int(x)
    lo, hi = {"<H": (0, 65535), "<h": (-32768, 32767), "<I": (0, 2 ** 32 - 1), "<i": (-2 ** 31, 2 ** 31 - 1)}.get(
        fmt, (0, 65535))
    if fmt == "<HH":
        return struct.pack(fmt, x & 0xFFFF, x & 0xFFFF)
    return struct.pack(fmt, min(max(x, lo), hi))


def _pick_element(ds, rng, focus):
    found = elements(ds)
    wanted = [(p, e) for p, e in found if e.keyword in focus]
    pool = wanted if wanted and rng.random() < 0.75 else found
    return pool[rng.randrange(len(pool))]


def draw(ds, rng, focus=()) -> Mutation:
    """One mutation of `ds` (see the module doc); `rng` a random.Random."""
    path, elem = _pick_element(ds, rng, focus)
    op = OPS[rng.randrange(len(OPS))]
    vr = elem.VR
    name = _name(path)
    if op == "drop":
        return Mutation(op, path, None, f"drop {name}")
    if op == "duplicate":
        items = [p for p, e in elements(ds) if e.VR == "SQ" and p[0] != META]
        if len(path) > 1 and path[-2] != META and rng.random() < 0.5:
            return Mutation(op, path, "item", f"duplicate the item holding {name}")
        if items:
            target = items[rng.randrange(len(items))]
            return Mutation(op, path, target, f"duplicate {name} into an item of {_name(target)}")
        return Mutation("drop", path, None, f"drop {name}")
    if op == "retype":
        if vr in BINARY or vr in ("OB", "OW", "OF", "OD", "OL", "UN"):
            n = rng.choice((0, 1, 3, 5, 7, 10))
            payload = bytes(rng.randrange(256) for _ in range(n))
        elif vr == "SQ":
            payload = rng.choice(WRONG_TEXT[:6])
        else:
            payload = rng.choice(WRONG_TEXT)
        return Mutation(op, path, payload, f"retype {name} ({vr}) = {payload[:24]!r}")
    if op == "truncate":
        return Mutation(op, path, rng.random(), f"truncate {name} ({vr})")
    # misvalue
    if vr in ("DS", "IS") or vr in BINARY:
        x = rng.choice(NUMBERS)
        many = rng.random() < 0.3 and vr in ("DS", "IS")
        count = max(1, elem.VM) if many or elem.VM > 1 else 1
        payload = ("number", x, count)
        return Mutation(op, path, payload, f"misvalue {name} ({vr}) = {x!r} x{count}")
    if vr in ("DA", "TM", "DT"):
        payload = rng.choice(DATES)
    elif vr == "UI":
        payload = rng.choice((b"1.2.3", b"", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.2", b"2.25.1"))
    elif vr in ("OB", "OW"):
        payload = ("pixels", rng.random())
        return Mutation(op, path, payload, f"misvalue {name}: pixel bytes scrambled")
    else:
        payload = rng.choice(CODES)
    return Mutation(op, path, payload, f"misvalue {name} ({vr}) = {payload!r}")


def _raw(tag, vr, value: bytes, ds, holder=None) -> RawDataElement:
    """A raw element as pydicom reads one from a file of `ds`'s encoding (the file meta is always explicit)."""
    implicit = bool((getattr(ds, "original_encoding", None) or (False, True))[0])
    if holder is not None and holder is getattr(ds, "file_meta", None):
        implicit = False
    return RawDataElement(Tag(tag), None if implicit else vr, len(value), value, 0, implicit, True)


def _set_raw(holder, tag, vr, value: bytes, root) -> None:
    holder._dict[Tag(tag)] = _raw(tag, vr, _even(value, vr) if vr in TEXT_VRS else value, root, holder)


def _encoded(elem) -> bytes:
    """The value of a text element as DICOM bytes (multi-values joined by a backslash)."""
    value = elem.value
    if isinstance(value, bytes):
        return value
    if value is None:
        return b""
    items = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(
        value, str) else [value]
    return "\\".join(str(v) for v in items).encode("latin-1", "replace")


def apply(ds, m: Mutation) -> bool:
    """Perform `m` on `ds` (in place); False when its path does not resolve in this dataset."""
    holder = container(ds, m.path)
    tag = m.path[-1]
    if holder is None or tag not in holder:
        return False
    elem = Element(holder, tag)
    vr = elem.VR
    if m.op == "drop":
        del holder[tag]
    elif m.op == "duplicate":
        _duplicate(ds, m, holder, elem)
    elif m.op == "retype":
        _set_raw(holder, tag, vr if vr != "SQ" else "LO", m.payload, ds)
    elif m.op == "truncate":
        _truncate(ds, holder, elem, m.payload)
    else:
        _misvalue(ds, holder, elem, m.payload)
    return True


def _duplicate(ds, m, holder, elem) -> None:
    if m.payload == "item":
        seq_holder = container(ds, m.path[:-1])
        step = m.path[-2]
        seq = seq_holder[step[0]].value if seq_holder is not None else None
        if seq is not None and step[1] < len(seq):
            seq.append(copy.deepcopy(seq[step[1]]))
        return
    target = container(ds, m.payload)
    if target is None:
        return
    seq = target.get(m.payload[-1])
    if seq is None or not isinstance(seq.value, Sequence):
        return
    if not len(seq.value):
        seq.value.append(Dataset())
    seq.value[0]._dict[elem.tag] = copy.deepcopy(holder._dict[elem.tag])


def _truncate(ds, holder, elem, share: float) -> None:
    tag, vr = elem.tag, elem.VR
    if vr == "SQ":
        items = elem.value
        keep = int(len(items) * share)
        while len(items) > keep:
            items.pop()
    elif vr in TEXT_VRS:
        raw = _encoded(elem)
        values = raw.split(b"\\")
        cut = b"\\".join(values[:max(0, len(values) - 1)]) if len(values) > 1 and share < 0.5 else raw[: len(raw) // 2]
        _set_raw(holder, tag, vr, cut, ds)
    else:
        raw = elem.value if isinstance(elem.value, bytes) else b""
        if not raw and vr in BINARY:
            raw = _binary_value(1, vr) * max(1, elem.VM)
        n = len(raw)
        cut = raw[: (n // 2 if share < 0.4 else n - 1 if share < 0.8 else 0)]
        holder._dict[Tag(tag)] = _raw(tag, vr, cut, ds, holder)


def _misvalue(ds, holder, elem, payload) -> None:
    tag, vr = elem.tag, elem.VR
    if isinstance(payload, tuple) and payload[0] == "number":
        _, x, count = payload
        if vr in BINARY:
            holder._dict[Tag(tag)] = _raw(tag, vr, _binary_value(x, vr) * count, ds, holder)
        else:
            _set_raw(holder, tag, vr, b"\\".join([_number_text(x, vr)] * count), ds)
    elif isinstance(payload, tuple) and payload[0] == "pixels":
        raw = bytearray(elem.value if isinstance(elem.value, bytes) else b"")
        step = max(1, len(raw) // 64)
        for i in range(0, len(raw), step):
            raw[i] = 0xFF
        holder._dict[Tag(tag)] = _raw(tag, vr, bytes(raw), ds, holder)
    elif vr in TEXT_VRS:
        _set_raw(holder, tag, vr, payload, ds)
    else:
        holder._dict[Tag(tag)] = _raw(tag, vr, payload if isinstance(payload, bytes) else b"", ds, holder)
