"""Readers for the NMED-T and NMED-H releases (cleaned, "Imputed" EEG) and for the song audio.

What is read (see ``shared/reference/nmed.md`` for the sources of these layout facts):

* **NMED-T** — a folder holding ``song21_Imputed.mat`` … ``song30_Imputed.mat``. Each file holds
  ``dataNN`` (125 electrodes × T samples × participants), ``subsNN`` (participant ids, one per slice of
  axis 3) and ``fs`` (125 Hz). MATLAB v5 files are read with :func:`scipy.io.loadmat`; v7.3 (HDF5)
  files are read with h5py, whose arrays appear transposed and are put back in MATLAB axis order here.
* **NMED-H** — a folder holding ``CleanEEG_aggregatedByStimulus_{orig,rev,phase,meas}.zip`` (or the
  same names extracted as folders). Members ``CleanEEG_aggregatedByStimulus_<cond>/songNN_<h>_Imputed.mat``
  hold ``dataNN_<h>`` (125 × T × 12), ``subsNN_<h>`` and ``fs``; ``<h>`` is the hearing, ``a`` (first)
  or ``b`` (second). Members are read into memory (``BytesIO``); nothing is extracted to disk.

:func:`read_recordings` yields one :class:`Recording` per participant × stimulus (× hearing for
NMED-H), in file order (stimulus number, then hearing, then the order of ``subsNN``; never assume the
order of ``subsNN`` is the same in every file — map by ``Recording.subject``). EEG values are returned
untouched (µV, cast to float32); preprocessing belongs to ``prepare``.

**NMED-H conditions.** ``conditions=None`` (the default) reads every condition archive present under
the root. Our reading of the paper's numbers (68 participants, 14 songs, 29.4 h) is that all NMED-H
listeners and stimuli were used with the conditions merged under their base song, so every condition
maps to its base song (:func:`datamodules.songs.song_of`), while ``Recording.stimulus`` and
``Recording.condition`` keep what was actually heard — the audio of stimulus ``NN`` (``songNN.wav``,
e.g. the reversed track for ``rev``) is what a CLAP target must be computed from. Pass
``conditions=("orig",)`` for intact music only. The stimulus numbering (orig 21-24, rev 25-28,
phase 29-32, meas 33-36) is third-party; a member whose number does not belong to its archive's
condition is reported as an error rather than guessed around.

**Audio alignment.** :func:`read_audio` returns the audio from its sample 0, which chanmusic aligns to
EEG sample 0 (what third-party code does; the zero-lag alignment is *unverified* for the real
releases). NMED-T's audio is not in the release: users put their own copies in the audio folder as
``songNN.wav`` (or ``.flac``/``.ogg``/``.mp3``). :func:`check_audio_covers` refuses audio shorter than
the EEG it must explain.

**Errors.** Every malformed input raises :class:`NMEDFormatError` (a ``ValueError``) naming the file
and the fix; nothing is silently dropped, padded or truncated.
"""
from __future__ import annotations

import io
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import numpy as np

from .songs import SONGS, condition_of, song_of

__all__ = [
    "NMED_CH_NAMES",
    "NMED_N_CHANNELS",
    "NMEDH_CONDITION_NAMES",
    "AUDIO_EXTENSIONS",
    "NMEDFormatError",
    "Recording",
    "nmed_montage",
    "normalize_dataset",
    "read_recordings",
    "audio_path",
    "audio_duration",
    "read_audio",
    "check_audio_covers",
]

NMED_CH_NAMES: list[str] = [f"E{i}" for i in range(1, 125)] + ["Cz"]
NMED_N_CHANNELS = len(NMED_CH_NAMES)  # 125
NMEDH_CONDITION_NAMES: tuple[str, ...] = ("orig", "rev", "phase", "meas")
NMEDH_HEARINGS: tuple[str, ...] = ("a", "b")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")  # preference order

_NMEDT_FILE = re.compile(r"^song(\d+)_Imputed\.mat$")
_NMEDH_MEMBER = re.compile(r"(?:^|/)song(\d+)_([ab])_Imputed\.mat$")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class NMEDFormatError(ValueError):
    """An NMED file, folder or audio file is missing or not in the release's format."""


@dataclass
class Recording:
    """One participant listening to one stimulus (once)."""

    dataset: str            # "nmed-t" | "nmed-h"
    subject: int            # participant id as stored in subsNN
    song: int               # global song index into datamodules.songs.SONGS
    eeg: np.ndarray = field(repr=False)  # float32 [C, T], µV, untouched
    sfreq: float
    ch_names: list[str] = field(repr=False)
    stimulus: int = 0       # release number (NMED-T 21..30, NMED-H 21..36)
    condition: str = "orig"  # NMED-H: orig | rev | phase | meas
    hearing: str = "a"      # NMED-H: a (first) | b (second)
    source: str = ""        # file path (NMED-H: "<zip>::<member>")

    @property
    def n_samples(self) -> int:
        return int(self.eeg.shape[-1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / float(self.sfreq)


# ----------------------------------------------------------------------------------------- montage
def nmed_montage():
    """The MNE ``DigMontage`` of the 125 NMED rows (``GSN-HydroCel-129`` restricted to E1-E124 + Cz)."""
    import mne

    full = mne.channels.make_standard_montage("GSN-HydroCel-129")
    pos = full.get_positions()
    ch_pos = {name: pos["ch_pos"][name] for name in NMED_CH_NAMES}
    return mne.channels.make_dig_montage(
        ch_pos=ch_pos, nasion=pos["nasion"], lpa=pos["lpa"], rpa=pos["rpa"],
        coord_frame=pos["coord_frame"],
    )


def normalize_dataset(dataset: str) -> str:
    """``"nmed-t"`` or ``"nmed-h"`` from any common spelling (NMED-T, nmedt, nmed_t …)."""
    key = re.sub(r"[^a-z]", "", str(dataset).lower())
    if key in ("nmedt", "t"):
        return "nmed-t"
    if key in ("nmedh", "h"):
        return "nmed-h"
    raise NMEDFormatError(f"unknown dataset {dataset!r}: expected 'nmed-t' or 'nmed-h'")


# ------------------------------------------------------------------------------- finding the files
@dataclass(frozen=True)
class _Source:
    label: str          # what error messages and Recording.source show
    stimulus: int
    hearing: str
    condition: str
    path: Path          # the .mat file, or the zip archive holding it
    member: str | None  # zip member name, or None

    def open(self) -> BinaryIO | Path:
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


def _check_root(root: Path, dataset: str) -> None:
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


def _nmedt_sources(root: Path) -> list[_Source]:
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
            found.append(_Source(str(p), number, "a", "orig", p, None))
    if not found:
        names = sorted(q.name for q in root.iterdir())[:10]
        raise NMEDFormatError(
            f"no NMED-T files in {root}: {_expected_root_help('nmed-t')}; found {names or 'nothing'}"
            + _other_layout_hint(root, "nmed-t")
        )
    return sorted(found, key=lambda s: s.stimulus)


def _nmedh_sources(root: Path, conditions: Sequence[str] | None) -> list[_Source]:
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

    sources: list[_Source] = []
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
                    "datamodules.songs.NMEDH_CONDITIONS (check it against stimAssignment.mat)"
                )
            if container.is_file():
                matched.append(_Source(label, number, hearing, cond, container, name))
            else:
                matched.append(_Source(label, number, hearing, cond, container / name, None))
        if not matched:
            raise NMEDFormatError(
                f"{container}: no members named CleanEEG_aggregatedByStimulus_{cond}/songNN_<a|b>_Imputed.mat "
                f"(found {members[:8] or 'nothing'}); is this the release archive?"
            )
        sources.extend(sorted(matched, key=lambda s: (s.stimulus, s.hearing)))
    return sources


# ----------------------------------------------------------------------------------- MATLAB files
def _is_hdf5(f: BinaryIO | Path) -> bool:
    fh = open(f, "rb") if isinstance(f, Path) else f
    try:
        for offset in (0, 512, 1024, 2048):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
        return False
    finally:
        if isinstance(f, Path):
            fh.close()
        else:
            fh.seek(0)


def _h5_value(h5file, obj) -> Any:
    """An h5py dataset as MATLAB would show it (axes reversed; char arrays and cells decoded)."""
    import h5py

    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    value = obj[()]
    if cls == "char":
        arr = np.asarray(value)
        return "".join(chr(int(c)) for c in arr.ravel(order="F"))
    if obj.dtype == h5py.ref_dtype or cls == "cell":
        refs = np.asarray(value)
        out = np.empty(refs.shape, dtype=object)
        for idx in np.ndindex(refs.shape):
            out[idx] = _h5_value(h5file, h5file[refs[idx]])
        return out.T
    arr = np.asarray(value)
    return arr.T if arr.ndim > 1 else arr


def _load_mat(label: str, f: BinaryIO | Path, wanted: Sequence[str]) -> dict[str, Any]:
    """Read ``wanted`` variables from a v5 or v7.3 MAT file, with errors naming ``label``."""
    corrupt = (f"{label}: cannot be read as a MATLAB .mat file ({{err}}); the file may be truncated or "
               "corrupt — re-download it from the release and compare its size")
    try:
        hdf5 = _is_hdf5(f)
    except OSError as e:
        raise NMEDFormatError(corrupt.format(err=f"{type(e).__name__}: {e}")) from e
    if hdf5:
        import h5py

        try:
            with h5py.File(f, "r") as h5:
                names = [k for k in h5.keys() if not k.startswith("#")]
                missing = [w for w in wanted if w not in names]
                if missing:
                    _missing_vars(label, missing, names)
                return {w: _h5_value(h5, h5[w]) for w in wanted}
        except NMEDFormatError:
            raise
        except Exception as e:  # h5py raises OSError/KeyError/ValueError on damaged files
            raise NMEDFormatError(corrupt.format(err=f"{type(e).__name__}: {e}")) from e

    import scipy.io

    try:
        names = [name for name, _shape, _cls in scipy.io.whosmat(f)]
    except Exception as e:
        raise NMEDFormatError(corrupt.format(err=f"{type(e).__name__}: {e}")) from e
    finally:
        if not isinstance(f, Path):
            f.seek(0)
    missing = [w for w in wanted if w not in names]
    if missing:
        damage = _v5_damage(f)  # a truncated file lists only the variables before the cut
        if damage:
            raise NMEDFormatError(corrupt.format(err=damage))
        _missing_vars(label, missing, names)
    try:
        out = scipy.io.loadmat(f, variable_names=list(wanted))
    except Exception as e:
        raise NMEDFormatError(corrupt.format(err=f"{type(e).__name__}: {e}")) from e
    missing = [w for w in wanted if w not in out]
    if missing:  # header listed it but the body did not deliver it: a damaged file
        raise NMEDFormatError(corrupt.format(err=f"variables {missing} could not be loaded"))
    return out


def _v5_damage(f: BinaryIO | Path) -> str | None:
    """Why a MATLAB v5 file's top-level element table is broken (e.g. truncated), or None."""
    fh = open(f, "rb") if isinstance(f, Path) else f
    try:
        fh.seek(0, io.SEEK_END)
        size = fh.tell()
        fh.seek(126)
        endian = {b"IM": "<", b"MI": ">"}.get(fh.read(2))
        if endian is None:
            return "no MATLAB v5 header"
        pos = 128
        while pos < size:
            fh.seek(pos)
            tag = fh.read(8)
            if len(tag) < 8:
                return f"the file ends inside an element header at byte {pos} of {size}"
            mtype, nbytes = np.frombuffer(tag, dtype=f"{endian}u4")
            if mtype >> 16:  # small data element: 4 bytes of data packed in the tag
                pos += 8
                continue
            end = pos + 8 + int(nbytes)
            if end > size:
                return f"an element needs {end} bytes but the file has {size} (truncated)"
            pos = end + (-end) % 8 if mtype != 15 else end  # compressed elements are not padded
        return None
    finally:
        if isinstance(f, Path):
            fh.close()
        else:
            fh.seek(0)


def _missing_vars(label: str, missing: list[str], names: list[str]) -> None:
    raise NMEDFormatError(
        f"{label}: missing variable(s) {missing}; the file holds {names or 'no variables'}. "
        "The release's files hold dataNN (125 × T × participants), subsNN (participant ids) and fs, "
        "with NN the number in the file name (NMED-H: dataNN_a / subsNN_a for hearing a); "
        "rename the variables or use the release's file"
    )


def _parse_subjects(label: str, var: str, raw: Any) -> list[int]:
    arr = np.asarray(raw, dtype=object).ravel()
    ids: list[int] = []
    for item in arr:
        while isinstance(item, np.ndarray):  # cells of MATLAB strings come as nested arrays
            if item.dtype.kind in "US":
                item = "".join(str(x) for x in item.ravel())
            elif item.size == 1:
                item = item.ravel()[0]
            else:
                break
        try:
            if isinstance(item, (bytes, str)):
                text = item.decode() if isinstance(item, bytes) else item
                digits = re.findall(r"\d+", text)
                if len(digits) != 1:
                    raise ValueError(text)
                ids.append(int(digits[0]))
            else:
                value = float(item)
                if not np.isfinite(value) or value != int(value):
                    raise ValueError(value)
                ids.append(int(value))
        except (TypeError, ValueError):
            raise NMEDFormatError(
                f"{label}: {var} holds {item!r}, which is not a participant id (expected integers or "
                "strings like 'S02')"
            ) from None
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise NMEDFormatError(f"{label}: {var} lists participant(s) {dupes} more than once ({ids})")
    return ids


def _parse_fs(label: str, raw: Any) -> float:
    arr = np.asarray(raw).ravel()
    try:
        value = float(arr[0]) if arr.size == 1 else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    if arr.size != 1 or not np.isfinite(value) or value <= 0:
        raise NMEDFormatError(
            f"{label}: fs = {np.asarray(raw).tolist()!r} is not a positive sampling rate; the release "
            "stores fs = 125 (Hz) in every file"
        )
    return value


def _check_data(label: str, var: str, raw: Any, n_subjects: int, subs_var: str) -> np.ndarray:
    data = np.asarray(raw)
    if data.dtype == object or data.dtype.kind not in "fiu":
        raise NMEDFormatError(
            f"{label}: {var} is not a numeric array (dtype {data.dtype}); expected 125 × T × participants"
        )
    if data.ndim == 2 and data.shape[0] == NMED_N_CHANNELS and n_subjects == 1:
        data = data[:, :, None]  # MATLAB drops a trailing singleton axis
    if data.ndim != 3:
        raise NMEDFormatError(
            f"{label}: {var} has shape {data.shape}; expected 3 axes, electrode × time × participant "
            f"(125 × T × {n_subjects})"
        )
    if data.shape[0] != NMED_N_CHANNELS:
        axes = [i for i, n in enumerate(data.shape) if n == NMED_N_CHANNELS]
        if axes:
            raise NMEDFormatError(
                f"{label}: {var} has shape {data.shape}: the 125 electrodes are on axis {axes[0]}, not "
                "axis 0 — the array looks transposed. The release's layout is electrode × time × "
                "participant (125 × T × S); if you converted the file, permute it back (numpy: "
                f"np.moveaxis(data, {axes[0]}, 0)), and note that h5py shows MATLAB v7.3 arrays with their "
                "axes reversed: give the original .mat file to this reader instead"
            )
        hint = (" (the release drops E125-E128 and keeps E1-E124 + Cz; select those rows)"
                if data.shape[0] in (128, 129) else "")
        raise NMEDFormatError(
            f"{label}: {var} has {data.shape[0]} rows (shape {data.shape}); expected 125 electrodes "
            f"(E1-E124 + Cz) on axis 0{hint}"
        )
    if data.shape[2] != n_subjects:
        if data.shape[1] == n_subjects:
            detail = ("axis 1 matches the participant count: time and participant axes look swapped; "
                      "permute to 125 × T × S (np.swapaxes(data, 1, 2))")
        else:
            detail = "the file is inconsistent; re-download it"
        raise NMEDFormatError(
            f"{label}: {var} has shape {data.shape} but {subs_var} lists {n_subjects} participants; "
            f"expected 125 × T × {n_subjects} — {detail}"
        )
    if data.shape[1] == 0:
        raise NMEDFormatError(f"{label}: {var} has no samples (shape {data.shape})")
    return data


def _check_finite(label: str, var: str, data: np.ndarray, ids: list[int]) -> None:
    counts = np.zeros(data.shape[2], dtype=np.int64)
    for s in range(data.shape[2]):
        sl = data[:, :, s]
        if data.dtype.kind == "f":
            counts[s] = sl.size - int(np.count_nonzero(np.isfinite(sl)))
    if counts.any():
        parts = [f"participant {ids[s]} (slice {s + 1}): {counts[s]} values"
                 for s in np.flatnonzero(counts)]
        raise NMEDFormatError(
            f"{label}: {var} holds {int(counts.sum())} NaN/Inf values — " + "; ".join(parts)
            + ". The release's Imputed data have none: re-download the file, or interpolate these "
            "samples and save a fixed copy"
        )


# -------------------------------------------------------------------------------------- reading
def read_recordings(
    root: str | Path,
    dataset: str = "nmed-t",
    songs: Iterable[int] | None = None,
    subjects: Iterable[int] | None = None,
    conditions: Sequence[str] | None = None,
    hearings: Sequence[str] | None = None,
    stimuli: Iterable[int] | None = None,
    expected_sfreq: float | None = None,
) -> Iterator[Recording]:
    """Yield one :class:`Recording` per participant × stimulus (× hearing) found under ``root``.

    Args:
        root: folder in the NMED-T (``songNN_Imputed.mat``) or NMED-H
            (``CleanEEG_aggregatedByStimulus_<cond>.zip``) release layout.
        dataset: ``"nmed-t"`` or ``"nmed-h"``.
        songs: global song indices (:data:`datamodules.songs.SONGS` rows) to read; default all.
        subjects: participant ids (as in ``subsNN``) to read; default all. An id found in no file
            read is an error (raised once all files have been read).
        conditions: NMED-H conditions (``orig``, ``rev``, ``phase``, ``meas``); default every
            condition whose archive is present (see the module docstring). Ignored for NMED-T.
        hearings: NMED-H hearings (``"a"``, ``"b"``); default both. Ignored for NMED-T.
        stimuli: release numbers (``songNN``) to read; default all.
        expected_sfreq: if given, every file's ``fs`` must equal it.

    Every file's ``fs`` must also equal the first file's. Files are loaded one at a time.
    """
    dataset = normalize_dataset(dataset)
    root = Path(root).expanduser()
    _check_root(root, dataset)
    if dataset == "nmed-t":
        sources = _nmedt_sources(root)
    else:
        sources = _nmedh_sources(root, conditions)
        if hearings is not None:
            hearings = [hearings] if isinstance(hearings, str) else list(hearings)
            bad = [h for h in hearings if h not in NMEDH_HEARINGS]
            if bad:
                raise NMEDFormatError(f"unknown NMED-H hearing(s) {bad}: expected 'a' and/or 'b'")
            sources = [s for s in sources if s.hearing in hearings]
            if not sources:
                raise NMEDFormatError(f"no NMED-H member under {root} has hearing {hearings}")

    if songs is not None:
        songs = sorted({int(s) for s in songs})
        valid = [s.index for s in SONGS if s.dataset == dataset]
        bad = [s for s in songs if s not in valid]
        if bad:
            raise NMEDFormatError(
                f"song(s) {bad} are not {dataset} songs: its global song indices are {valid}"
            )
        have = {song_of(dataset, s.stimulus).index for s in sources}
        absent = [s for s in songs if s not in have]
        if absent:
            raise NMEDFormatError(
                f"song(s) {absent} requested but no file under {root} holds them "
                f"(the files found hold songs {sorted(have)})"
            )
        sources = [s for s in sources if song_of(dataset, s.stimulus).index in songs]
    if stimuli is not None:
        stimuli = sorted({int(n) for n in stimuli})
        have = {s.stimulus for s in sources}
        absent = [n for n in stimuli if n not in have]
        if absent:
            raise NMEDFormatError(
                f"stimulus number(s) {absent} requested but not found under {root} "
                f"(selected files hold {sorted(have)})"
            )
        sources = [s for s in sources if s.stimulus in stimuli]
    if not sources:
        raise NMEDFormatError(f"the selection matches no file under {root}")
    wanted_subjects = None if subjects is None else {int(s) for s in subjects}
    if wanted_subjects is not None and not wanted_subjects:
        raise NMEDFormatError("subjects=[] selects nothing; pass None for all participants")

    return _iter_recordings(dataset, sources, wanted_subjects, expected_sfreq, root)


def _iter_recordings(dataset, sources, wanted_subjects, expected_sfreq, root) -> Iterator[Recording]:
    first_fs: tuple[float, str] | None = None
    seen_subjects: set[int] = set()
    for src in sources:
        suffix = "" if dataset == "nmed-t" else f"_{src.hearing}"
        data_var, subs_var = f"data{src.stimulus}{suffix}", f"subs{src.stimulus}{suffix}"
        mat = _load_mat(src.label, src.open(), [data_var, subs_var, "fs"])
        fs = _parse_fs(src.label, mat["fs"])
        if expected_sfreq is not None and not np.isclose(fs, float(expected_sfreq)):
            raise NMEDFormatError(
                f"{src.label}: fs = {fs:g} Hz but {float(expected_sfreq):g} Hz is expected; the release's "
                "cleaned EEG is at 125 Hz — resample the file or change the expected rate"
            )
        if first_fs is None:
            first_fs = (fs, src.label)
        elif not np.isclose(fs, first_fs[0]):
            raise NMEDFormatError(
                f"{src.label}: fs = {fs:g} Hz but {first_fs[1]} has fs = {first_fs[0]:g} Hz; all files of "
                "a dataset must share one sampling rate — resample the odd file"
            )
        ids = _parse_subjects(src.label, subs_var, mat[subs_var])
        data = _check_data(src.label, data_var, mat[data_var], len(ids), subs_var)
        del mat
        _check_finite(src.label, data_var, data, ids)
        seen_subjects.update(ids)
        song = song_of(dataset, src.stimulus).index
        for s, sid in enumerate(ids):
            if wanted_subjects is not None and sid not in wanted_subjects:
                continue
            yield Recording(
                dataset=dataset, subject=sid, song=song,
                eeg=np.ascontiguousarray(data[:, :, s], dtype=np.float32),
                sfreq=fs, ch_names=list(NMED_CH_NAMES), stimulus=src.stimulus,
                condition=src.condition, hearing=src.hearing, source=src.label,
            )
        del data
    if wanted_subjects is not None:
        missing = sorted(wanted_subjects - seen_subjects)
        if missing:
            raise NMEDFormatError(
                f"participant(s) {missing} requested but found in no file read under {root} "
                f"(participants present: {sorted(seen_subjects)})"
            )


# ----------------------------------------------------------------------------------------- audio
def audio_path(audio_root: str | Path, stimulus: int) -> Path:
    """The audio file of stimulus ``songNN`` in ``audio_root`` (``.wav`` > ``.flac`` > ``.ogg`` > ``.mp3``)."""
    audio_root = Path(audio_root).expanduser()
    stimulus = int(stimulus)
    expected = " | ".join(f"song{stimulus}{ext}" for ext in AUDIO_EXTENSIONS)
    if not audio_root.is_dir():
        raise NMEDFormatError(
            f"audio folder {audio_root} does not exist: put the song audio there as {expected} "
            "(NMED-T's audio is not in the release — bring your own copies), or set --data.audio_root"
        )
    by_name = {p.name.lower(): p for p in audio_root.iterdir() if p.is_file()}
    for ext in AUDIO_EXTENSIONS:
        p = by_name.get(f"song{stimulus}{ext}")
        if p is not None:
            return p
    raise NMEDFormatError(
        f"no audio for stimulus {stimulus} in {audio_root}: expected {expected} "
        "(NN = the release's song number; NMED-T's audio is not in the release — bring your own copies)"
    )


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, read from its header where possible."""
    path = Path(path)
    if not path.is_file():
        raise NMEDFormatError(f"audio file {path} does not exist")
    try:
        import soundfile as sf

        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / float(info.samplerate)
    except Exception:
        pass
    try:
        import librosa

        with warnings.catch_warnings():  # librosa warns when it falls back to audioread
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=str(path)))
    except Exception as e:
        raise NMEDFormatError(
            f"{path}: cannot read this audio file ({type(e).__name__}: {e}); convert it to WAV or FLAC"
        ) from e


def _resample(x: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    from scipy.signal import resample_poly

    ratio = Fraction(int(target_sr), int(sr)).limit_denominator(10_000)
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


def read_audio(audio_root: str | Path, stimulus: int, target_sr: int | None = None
               ) -> tuple[np.ndarray, int]:
    """Mono float32 audio of stimulus ``songNN`` from sample 0 (= EEG sample 0), and its rate.

    Multi-channel files are averaged to mono; ``target_sr`` resamples (polyphase, scipy).
    """
    path = audio_path(audio_root, stimulus)
    audio: np.ndarray | None = None
    sr = 0
    try:
        import soundfile as sf

        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        audio = data.mean(axis=1)
    except Exception:
        audio = None
    if audio is None:
        try:
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                audio, sr = librosa.load(str(path), sr=None, mono=True)
        except Exception as e:
            raise NMEDFormatError(
                f"{path}: cannot decode this audio file ({type(e).__name__}: {e}); convert it to WAV or FLAC"
            ) from e
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0:
        raise NMEDFormatError(f"{path}: the audio file holds no samples")
    if not np.isfinite(audio).all():
        raise NMEDFormatError(f"{path}: the audio holds {int((~np.isfinite(audio)).sum())} NaN/Inf samples")
    sr = int(sr)
    if target_sr is not None and int(target_sr) != sr:
        audio = _resample(audio, sr, int(target_sr))
        sr = int(target_sr)
    return audio, sr


def check_audio_covers(recording: Recording, audio_len_s: float | None = None, *,
                       audio_root: str | Path | None = None, tolerance_s: float = 0.0) -> float:
    """Raise unless the stimulus audio lasts at least as long as ``recording``'s EEG; return its length.

    Give the audio length directly (``audio_len_s``) or let it be read from ``audio_root``
    (``audio_path`` + :func:`audio_duration`). Audio sample 0 is aligned to EEG sample 0, so audio
    shorter than the EEG would leave EEG without a stimulus; ``tolerance_s`` accepts a known shortfall.
    """
    path: Path | None = None
    if audio_len_s is None:
        if audio_root is None:
            raise TypeError("check_audio_covers needs audio_len_s or audio_root")
        path = audio_path(audio_root, recording.stimulus)
        audio_len_s = audio_duration(path)
    eeg_s = recording.duration_s
    if audio_len_s + float(tolerance_s) < eeg_s:
        where = f"audio {path}" if path is not None else f"the audio of stimulus {recording.stimulus}"
        raise NMEDFormatError(
            f"{where} lasts {audio_len_s:.3f} s but the EEG it must explain ({recording.source}, "
            f"participant {recording.subject}) lasts {eeg_s:.3f} s; audio sample 0 is aligned to EEG "
            "sample 0, so use the full-length track (not a preview or trimmed copy)"
        )
    return float(audio_len_s)
