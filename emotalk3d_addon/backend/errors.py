"""User-facing errors: bad input gets one clear message, never a traceback."""
from __future__ import annotations


class InputError(Exception):
    """Something the user handed us is unusable; the message says what and why."""


class AudioError(InputError):
    """An audio file is missing, undecodable, empty, too short or holds NaN/Inf."""


class BundleError(InputError):
    """A subject bundle is invalid. ``defects`` lists every problem found, one line each."""

    def __init__(self, where: str, defects: list[str]):
        self.where = where
        self.defects = list(defects)
        lines = "\n".join(f"  - {d}" for d in self.defects)
        super().__init__(f"invalid subject bundle {where}:\n{lines}" if self.defects else where)


class DatasetError(InputError):
    """A training dataset does not follow the documented layout."""
