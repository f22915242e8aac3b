"""Finding the release's files under a data root: NMED-T's ``songNN_Imputed.mat`` files and NMED-H's
condition archives (zip files or the same names extracted as folders), one :class:`Source` per file or member."""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from ..songs import song_of
from .recording import NMEDH_CONDITION_NAMES, NMEDFormatError
from .songs import condition_of

_NMEDT_FILE = re.compile(r"^song(\d+)_Imputed\.mat$")
_NMEDH_MEMBER = re.compile(r"(?:^|/)song(\d+)_([ab])_Imputed\.mat$")


@dataclass(frozen=True)
class Source:
    """One release file (NMED-T) or archive member (NMED-H) holding one stimulus × hearing."""

    label: str          # what error messages and Recording.source show
    stimulus: int
    hearing: str
    condition: str
    path: Path          # the .mat file, or the zip archive holding it
    member: str | None  # zip member name, or None

    def open(self) -> BinaryIO | Path:
        """The file's path, or the zip member read into memory."""
        if self.member is None:
            return self.path
        try:
            with zipfile.ZipFile(self.path) as zf:
                return io.BytesIO(zf.read(self.member))
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as e:
            raise NMEDFormatError(
                f"{self.label}: cannot read this member of the zip archive ({type(e).__name__}: {e}); "
                f"the archive may be truncated or corrupt — re-download {self.path.name}"
            ) from e


def _expected_root_help(dataset: str) -> str:
    if dataset == "nmed-t":
        return ("expected the NMED-T release files song21_Imputed.mat … song30_Imputed.mat "
                "(variables dataNN, subsNN, fs) directly in this folder")
    return ("expected the NMED-H release archives CleanEEG_aggregatedByStimulus_<cond>.zip "
            "(<cond> = orig, rev, phase, meas; or the same names extracted as folders) in this folder")


def check_root(root: Path, dataset: str) -> None:
    """Raise unless ``root`` is an existing folder, saying which layout ``dataset`` expects there."""
    if not root.exists():
        raise NMEDFormatError(
            f"data root {root} does not exist: {_expected_root_help(dataset)}; point --data.root at that "
            "folder (datamodules.synthetic.write_demo(root) writes a demo set in this layout)"
        )
    if not root.is_dir():
        raise NMEDFormatError(f"data root {root} is not a folder: {_expected_root_help(dataset)}")


def _other_layout_hint(root: Path, dataset: str) -> str:
    if dataset == "nmed-t" and any(root.glob("CleanEEG_aggregatedByStimulus_*")):
        return "; this folder looks like NMED-H (CleanEEG_aggregatedByStimulus_*): use dataset='nmed-h'"
    if dataset == "nmed-h" and any(root.glob("song*_Imputed.mat")):
        return "; this folder looks like NMED-T (songNN_Imputed.mat): use dataset='nmed-t'"
    return ""


def nmedt_sources(root: Path) -> list[Source]:
    """NMED-T's ``songNN_Imputed.mat`` files in ``root``, by stimulus number."""
    found = []
    for p in sorted(root.iterdir()):
        m = _NMEDT_FILE.match(p.name)
        if m and p.is_file():
            number = int(m.group(1))
            try:
                song_of("nmed-t", number)
            except ValueError as e:
                raise NMEDFormatError(
                    f"{p}: {e}; NMED-T's files are song21_Imputed.mat … song30_Imputed.mat — rename or "
                    "remove this file"
                ) from e
            found.append(Source(str(p), number, "a", "orig", p, None))
    if not found:
        names = sorted(q.name for q in root.iterdir())[:10]
        raise NMEDFormatError(
            f"no NMED-T files in {root}: {_expected_root_help('nmed-t')}; found {names or 'nothing'}"
            + _other_layout_hint(root, "nmed-t")
        )
    return sorted(found, key=lambda s: s.stimulus)


def nmedh_sources(root: Path, conditions: Sequence[str] | None) -> list[Source]:
    """NMED-H's members of the ``conditions`` archives (default: every one present), by condition, stimulus, hearing."""
    present: dict[str, Path] = {}
    for cond in NMEDH_CONDITION_NAMES:
        for cand in (root / f"CleanEEG_aggregatedByStimulus_{cond}.zip",
                     root / f"CleanEEG_aggregatedByStimulus_{cond}"):
            if cand.exists():
                present[cond] = cand
                break
    if conditions is None:
        if not present:
            raise NMEDFormatError(
                f"no NMED-H archives in {root}: {_expected_root_help('nmed-h')}"
                + _other_layout_hint(root, "nmed-h")
            )
        conditions = [c for c in NMEDH_CONDITION_NAMES if c in present]
    else:
        conditions = [conditions] if isinstance(conditions, str) else list(conditions)
        for cond in conditions:
            if cond not in NMEDH_CONDITION_NAMES:
                raise NMEDFormatError(
                    f"unknown NMED-H condition {cond!r}: expected some of {list(NMEDH_CONDITION_NAMES)}"
                )
            if cond not in present:
                raise NMEDFormatError(
                    f"condition {cond!r} requested but {root / f'CleanEEG_aggregatedByStimulus_{cond}.zip'} "
                    f"does not exist (present: {sorted(present) or 'none'}); put the release archive there "
                    "or leave this condition out"
                )

    sources: list[Source] = []
    for cond in conditions:
        container = present[cond]
        if container.is_dir():
            members = sorted(
                str(p.relative_to(container)).replace("\\", "/") for p in container.rglob("*.mat")
            )
        else:
            try:
                with zipfile.ZipFile(container) as zf:
                    members = sorted(zf.namelist())
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise NMEDFormatError(
                    f"{container}: not a readable zip archive ({type(e).__name__}: {e}); it may be "
                    "truncated or corrupt — re-download it from the release"
                ) from e
        matched = []
        for name in members:
            m = _NMEDH_MEMBER.search(name)
            if not m or "__MACOSX" in name:
                continue
            number, hearing = int(m.group(1)), m.group(2)
            label = f"{container}::{name}" if container.is_file() else str(container / name)
            try:
                song_of("nmed-h", number)
                actual = condition_of("nmed-h", number)
            except ValueError as e:
                raise NMEDFormatError(
                    f"{label}: {e}; NMED-H stimuli are song21 … song36 — rename or remove this member"
                ) from e
            if actual != cond:
                raise NMEDFormatError(
                    f"{label}: stimulus {number} is numbered as condition {actual!r} but sits in the "
                    f"{cond!r} archive; chanmusic's numbering (orig 21-24, rev 25-28, phase 29-32, "
                    "meas 33-36) is third-party — if the release numbers stimuli differently, fix "
                    "datamodules.nmed.songs.NMEDH_CONDITIONS (check it against stimAssignment.mat)"
                )
            if container.is_file():
                matched.append(Source(label, number, hearing, cond, container, name))
            else:
                matched.append(Source(label, number, hearing, cond, container / name, None))
        if not matched:
            raise NMEDFormatError(
                f"{container}: no members named CleanEEG_aggregatedByStimulus_{cond}/songNN_<a|b>_Imputed.mat "
                f"(found {members[:8] or 'nothing'}); is this the release archive?"
            )
        sources.extend(sorted(matched, key=lambda s: (s.stimulus, s.hearing)))
    return sources

