"""Writing the demo in the NMED release layout (:func:`write_demo`): ``songNN_Imputed.mat`` (NMED-T) or the
condition archives (NMED-H), ``stimuli/songNN.wav`` and ``chanmusic_demo.json``."""
from __future__ import annotations

import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..nmed import NMED_N_CHANNELS
from ..nmed.songs import NMEDH_CONDITIONS
from .generator import DemoGenerator


def write_release_layout(gen: DemoGenerator, root: str | Path) -> Path:
    """Write ``gen``'s audio, EEG and manifest under ``root``; returns ``root``."""
    import scipy.io
    import soundfile as sf

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    audio_dir = root / "stimuli"
    audio_dir.mkdir(exist_ok=True)
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # numpy releases the GIL; results do not depend on it
        list(pool.map(gen.features, gen.stimuli))  # fills the audio and feature caches
    for stim in gen.stimuli:
        sf.write(str(audio_dir / f"song{stim}.wav"), gen.audio(stim), gen.audio_sr, subtype="PCM_16")

    zips: dict[str, zipfile.ZipFile] = {}
    try:
        if gen.dataset == "nmed-h":
            for cond in gen.conditions:
                zips[cond] = zipfile.ZipFile(root / f"CleanEEG_aggregatedByStimulus_{cond}.zip", "w",
                                             compression=zipfile.ZIP_STORED)
        for stim in gen.stimuli:
            ids = gen.listeners(stim)
            if not ids:
                continue
            for hearing in gen.hearings:
                data = np.empty((NMED_N_CHANNELS, gen.n_samples, len(ids)), dtype=np.float32)
                with ThreadPoolExecutor(workers) as pool:
                    for j, x in enumerate(pool.map(lambda sid: gen.eeg(sid, stim, hearing), ids)):
                        data[:, :, j] = x
                suffix = "" if gen.dataset == "nmed-t" else f"_{hearing}"
                variables = {f"data{stim}{suffix}": data,
                             f"subs{stim}{suffix}": np.array(ids, dtype=np.float64)[None, :],
                             "fs": np.array([[gen.sfreq]])}
                if gen.dataset == "nmed-t":
                    scipy.io.savemat(str(root / f"song{stim}_Imputed.mat"), variables, format="5")
                else:
                    cond = next(c for c, first in NMEDH_CONDITIONS.items() if first <= stim < first + 4)
                    buf = io.BytesIO()
                    scipy.io.savemat(buf, variables, format="5")
                    zips[cond].writestr(
                        f"CleanEEG_aggregatedByStimulus_{cond}/song{stim}{suffix}_Imputed.mat",
                        buf.getvalue())
                del data
    finally:
        for zf in zips.values():
            zf.close()
    (root / "chanmusic_demo.json").write_text(json.dumps(gen.manifest(), indent=2) + "\n")
    return root


def write_demo(root: str | Path, seed: int = 0, **settings: Any) -> Path:
    """Write the demo set under ``root`` in the NMED release layout (with ``stimuli/songNN.wav``).

    ``settings`` are :class:`DemoGenerator`'s keywords (``dataset="nmed-t"``, ``n_subjects=4``,
    ``duration_s=120.0``, ``sfreq=125.0``, ``audio_sr=16000``, ``music_response=True``, ``response_gain=1.0``,
    ``conditions=("orig", "rev")``, ``songs=None``, ``phase_locked_fraction=0.5``, ``induced_fraction=0.3``,
    ``audio_margin_s=2.0``; documented there).
    ``dataset="nmed-t"`` writes ``songNN_Imputed.mat`` for songs 21..30 (or the global ``songs`` given);
    ``"nmed-h"`` writes ``CleanEEG_aggregatedByStimulus_<cond>.zip`` for ``conditions`` (``orig`` and/or
    ``rev``), hearings a and b, each subject hearing one condition of each song (Latin square).
    Subject ids are 1..n_subjects; their order in ``subsNN`` is shuffled per file, as the reader must
    not assume it. ``music_response=False`` writes the identical noise without the music (the
    no-music control; write it to another root). Also writes ``chanmusic_demo.json`` (the settings).
    Returns ``root``. See ``docs/synthetic.md`` for the design and SNR.
    """
    return write_release_layout(DemoGenerator(seed=seed, **settings), root)
