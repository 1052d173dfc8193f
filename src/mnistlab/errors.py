"""The one error hierarchy of mnistlab.

Every error a user can cause is a MnistlabError whose message is one line that names the
file or value and says what to do; the CLI prints it and exits non-zero, with no traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MnistlabError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    exit_code = 1

    def __init__(self, message: str):
        # Keep the promise of one line even when a message is built from other errors' text.
        super().__init__(" ".join(str(message).split()))


class UnknownName(MnistlabError, KeyError):
    """A dataset, model or option name that is not known; the message offers close matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else f"known: {', '.join(known)}"
        super().__init__(f"unknown {kind} {name!r}; {hint}")
        self.name = name

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class IdxFormatError(MnistlabError):
    """A file that is not a well-formed IDX file (bad magic number, sizes, truncated, HTML...)."""


class ChecksumError(MnistlabError):
    """A file whose content does not match the published checksum."""


class DatasetNotFound(MnistlabError):
    """No source could provide a verified copy of a dataset; the message lists what was tried."""


class SourceError(MnistlabError):
    """One source failed (a mirror, a package tool, a folder); collected into DatasetNotFound."""


class UnsafeArchiveError(MnistlabError):
    """An archive member with an absolute path or '..' that would escape the target folder."""


class StorageError(MnistlabError):
    """A folder that cannot be written: read-only, full, or not a folder."""


class CacheError(StorageError):
    """The cache folder cannot be written or a cached entry is unusable."""


class RunError(MnistlabError):
    """A run folder that is missing, incomplete, damaged, or from an incompatible model."""


class RunBusy(RunError):
    """A run folder that another process is training right now."""

    exit_code = 75  # EX_TEMPFAIL: try again later


class TrainingInterrupted(MnistlabError):
    """Ctrl-C during training: the run folder holds the last completed epoch and can be resumed."""

    exit_code = 130


class ModelSourceError(MnistlabError):
    """A model named by reference (file.py:Name, package.module:Name, an entry point) that cannot be imported, is not
    a model, or whose code changed since a run was trained with it."""


class InvalidArgument(MnistlabError, ValueError):
    """A value outside its allowed range (negative epochs, zero batch size, wrong image shape...)."""


class PeerFailed(MnistlabError):
    """Another process of a distributed run failed and said why; that process reports it, this one exits quietly."""
