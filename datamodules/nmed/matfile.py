"""Reading named variables from a MATLAB file, v5 (``scipy.io``) or v7.3 (HDF5, ``h5py``, arrays put back in
MATLAB axis order), with one :class:`NMEDFormatError` naming the file for a damaged file or a missing variable."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

from .recording import NMEDFormatError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


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


def load_mat(label: str, f: BinaryIO | Path, wanted: Sequence[str]) -> dict[str, Any]:
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
