"""One error type per fault family; every error can name the file, patient and fraction it concerns.

The CLI prints `str(error)` on one line and exits non-zero; the Slicer widget shows it in a message box.
"""
from __future__ import annotations

import os


class CompassError(Exception):
    """Base class. `str()` gives one line: what is wrong, then where (file, patient, fraction)."""

    def __init__(self, message: str, *, file=None, patient=None, fraction=None):
        super().__init__(message)
        self.message = message
        self.file = os.fspath(file) if file is not None else None
        self.patient = patient
        self.fraction = fraction

    def where(self) -> str:
        parts = []
        if self.patient is not None:
            parts.append(f"patient {self.patient}")
        if self.fraction is not None:
            # fractions count from 1; the manifest's planning entry (CT and structures) is index 0
            parts.append("planning scan" if self.fraction == 0 else f"fraction {self.fraction}")
        if self.file is not None:
            parts.append(f"file {self.file}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.message} [{where}]" if where else self.message

    def at(self, *, file=None, patient=None, fraction=None) -> "CompassError":
        """Fill in context not known where the error was raised (keeps what is already set)."""
        if self.file is None and file is not None:
            self.file = os.fspath(file)
        if self.patient is None:
            self.patient = patient
        if self.fraction is None:
            self.fraction = fraction
        return self


class InputError(CompassError):
    """An input file is unreadable, of the wrong kind, or inconsistent (DICOM, NRRD, CSV, manifest)."""


class GeometryError(InputError):
    """Grids that do not fit: uneven spacing, oblique or mismatched orientation, frame of reference."""


class DoseError(CompassError):
    """Dose quantities that cannot be computed (bad alpha/beta, missing scaling, unknown units)."""


class FeatureError(CompassError):
    """Feature extraction failed for an organ/fraction."""


class ModelError(CompassError):
    """Twin model fitting, loading or scoring failed (wrong features, corrupt model folder)."""
