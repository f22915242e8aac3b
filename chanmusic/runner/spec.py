"""The comparison spec: ``experiments/paper.yaml`` read into :class:`Spec` (rows, ablations, one resolved profile).

A spec file lists ``rows`` (the main table) and ``ablations``, each a :class:`Row` (a YAML list of configs run
as one kind of step), plus ``profiles`` (``quick``, ``full``: seeds, base configs, settings written after the
configs). :func:`load_spec` resolves one profile (``{out}`` becomes the output folder); :func:`deep_merge` is
the merge rule for every settings layer of the runner. A profile may also name its ``rows`` (the default
selection), ``folds`` (e.g. ``subjects k=5``: every run once per fold of held-out subjects) and ``executor``
(where steps run: :class:`chanmusic.runner.engine.EngineSettings`); the spec's top level may set the last two
for every profile.

The verdict: ``primary_metric`` (top level or profile; default ``song_id``) is the metric on which "beats its
no-music control" is decided; it must be an alignment identification that some row computes. Seeds resample the
test set: seed ``k`` of a comparison runs with ``data.split_seed`` = ``split_seeds[k]`` (top level or profile;
distinct values) or, without the list, :data:`DEFAULT_SPLIT_SEED` + ``k`` — the split and the control's shifts
are drawn from it, so each seed scores its own test windows.
"""
from __future__ import annotations

import copy
import importlib.resources
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chanmusic.core.errors import InputError

import yaml

#: the folder that holds the ``chanmusic`` package: the repository in a checkout, site-packages when installed
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def experiments_root() -> Path:
    """The experiment YAMLs: ``experiments/`` of a source checkout (editable or on ``PYTHONPATH``), else the package
    data ``chanmusic.experiments`` of an installed wheel (read through :mod:`importlib.resources`)."""
    checkout = SOURCE_ROOT / "experiments"
    if (SOURCE_ROOT / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    found = Path(str(importlib.resources.files("chanmusic").joinpath("experiments")))  # a real folder
    if not (found / "paper.yaml").is_file():
        raise InputError("chanmusic.experiments", f"the installed package has no experiment YAMLs ({found})",
                         "reinstall chanmusic from a wheel or checkout that ships them (`pip install .`)")
    return found


EXPERIMENTS = experiments_root()
DEFAULT_SPEC = EXPERIMENTS / "paper.yaml"
# the Lightning entry points each kind of step runs, in order
STEP_COMMANDS = {"pretrain": ("fit",), "align": ("fit", "test"), "reconstruct": ("test", "predict")}
DEFAULT_PRIMARY = "song_id"  #: the verdict's metric when a spec names none (onset-locked signals cannot help it)
DEFAULT_SPLIT_SEED = 42  #: seed k draws split_seed 42 + k when the spec lists no split_seeds


@dataclass
class Row:
    name: str
    label: str
    configs: list[str]
    section: str = "main"                     # "main" or "ablation"
    kind: str = "align"                       # "align" (fit + test) or "reconstruct" (test + predict, no training)
    pretrain: list[str] | None = None
    args: list[str] = field(default_factory=list)
    reconstruct: bool | None = None           # None: the profile's default
    control: bool = True
    interpret: bool = True
    paper: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict, section: str) -> "Row":
        if "name" not in d or "configs" not in d:
            raise InputError("spec: rows", f"every row needs name and configs, got {d}", "add the missing key")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", d["name"]):
            raise InputError(f"spec: row {d['name']!r}", "the name must be a plain folder name",
                             "use letters, digits, _ . -")
        kind = d.get("kind", "align")
        if kind not in STEP_COMMANDS or kind == "pretrain":
            raise InputError(f"spec: row {d['name']}: kind", f"{kind!r} is not a row kind", "use align or reconstruct")
        return cls(name=d["name"], label=d.get("label", d["name"]), configs=list(d["configs"]), section=section, kind=kind,
                   pretrain=list(d["pretrain"]) if d.get("pretrain") else None,
                   args=[str(a) for a in d.get("args", [])], reconstruct=d.get("reconstruct"),
                   control=bool(d.get("control", True)), interpret=bool(d.get("interpret", True)),
                   paper={k: float(v) for k, v in (d.get("paper") or {}).items()})


@dataclass
class Spec:
    """The resolved comparison: rows + ablations, the chosen profile, paths. JSON-serialisable."""

    path: str
    title: str
    config_root: str
    profile_name: str
    profile: dict[str, Any]
    rows: list[Row]
    metrics: list[str]
    plot_metrics: list[str]
    ablation_metrics: list[str]
    pretrain_arg: str
    reconstruct: dict[str, Any] | None
    reference_row: str | None
    seeds: list[int]
    paper_source: str = ""
    extra_args: list[str] = field(default_factory=list)
    row_order: list[str] = field(default_factory=list)   # every row of the spec file, in order
    folds: dict[str, Any] | None = None                  # {"by": "subjects", "k": 5} or None
    engine: dict[str, Any] = field(default_factory=dict)  # EngineSettings as a dict
    primary_metric: str = DEFAULT_PRIMARY                # the metric "beats its control" is decided on
    split_seeds: list[int] = field(default_factory=list)  # split_seeds[k]: data.split_seed of seed k

    def split_seed(self, seed: int) -> int:
        """The ``data.split_seed`` of seed ``seed`` (its own test windows and control shifts)."""
        i = self.seeds.index(seed) if seed in self.seeds else seed
        return int(self.split_seeds[i]) if i < len(self.split_seeds) else DEFAULT_SPLIT_SEED + int(seed)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["rows"] = [r.__dict__ for r in self.rows]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Spec":
        d = dict(d)
        d["rows"] = [Row(**r) for r in d["rows"]]
        return cls(**d)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def config_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else Path(self.config_root) / p


def read_spec_yaml(path: Path) -> dict[str, Any]:
    """The spec file's mapping; a missing file or invalid YAML is one line naming the file (and line)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InputError(f"--config {path}", f"cannot read the spec ({e.strerror or e})",
                         "check the path (default experiments/paper.yaml)") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise InputError(where, f"invalid YAML in the compare spec ({' '.join(str(getattr(e, 'problem', e)).split())})",
                         "fix the YAML syntax at that line") from e
    if not isinstance(raw, dict):
        raise InputError(str(path), f"a compare spec must be a mapping, not a {type(raw).__name__}",
                         "see experiments/paper.yaml for the layout (title, rows, profiles)")
    return raw


def load_spec(path: str | Path = DEFAULT_SPEC, profile: str = "full", rows: list[str] | None = None,
              seeds: int | None = None, out: Path | None = None, extra_args: list[str] | None = None,
              engine: dict[str, Any] | None = None, folds: str | None = None) -> Spec:
    """Read the spec YAML and resolve one profile (``{out}`` in profile strings becomes the output folder).
    ``engine`` (settings from flags) goes over the spec's and the profile's ``executor:``; ``folds`` over theirs."""
    path = Path(path).resolve()
    raw = read_spec_yaml(path)
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise InputError(str(path), f"no profile {profile!r}", f"pick one of {sorted(profiles)}")
    prof = _substitute(copy.deepcopy(profiles[profile]), {"out": str(out.resolve()) if out else "OUT"})
    all_rows = [Row.from_dict(d, "main") for d in raw.get("rows", [])] + \
               [Row.from_dict(d, "ablation") for d in raw.get("ablations", [])]
    names = [r.name for r in all_rows]
    order = list(names)
    if len(set(names)) != len(names):
        raise InputError(str(path), f"duplicate row names {sorted({n for n in names if names.count(n) > 1})}",
                         "give every row its own name")
    rows = rows or prof.get("rows")
    if rows:
        unknown = [r for r in rows if r not in names]
        if unknown:
            raise InputError("--rows", f"unknown {unknown}", f"the spec has {names}")
        all_rows = [r for r in all_rows if r.name in rows]
    if "paper" in prof:  # a profile reproducing another paper's protocol (predann): its numbers, for every row
        for r in all_rows:
            r.paper = {k: float(v) for k, v in (prof["paper"] or {}).items()}
    for r in all_rows:  # the profile may leave out some rows' controls (e.g. the demo: the audio oracle's)
        if r.name in (prof.get("no_control") or []):
            r.control = False
    n_seeds = int(seeds if seeds is not None else prof.get("seeds", 1))
    if n_seeds < 1:
        raise InputError("--seeds", f"{n_seeds} seeds", "use at least 1")
    split_seeds = _split_seeds(prof.get("split_seeds", raw.get("split_seeds")), n_seeds)
    if "metrics" in raw:
        metrics = list(raw["metrics"])
    else:  # the registry's default columns (imported here: torchmetrics only when a spec names none)
        from chanmusic.results.registry import default_columns

        metrics = default_columns()
    return Spec(
        path=str(path), title=raw.get("title", "comparison"),
        config_root=str((path.parent / raw.get("config_root", ".")).resolve()),
        profile_name=profile, profile=prof, rows=all_rows, metrics=metrics,
        plot_metrics=list(raw.get("plot_metrics", metrics)), ablation_metrics=list(raw.get("ablation_metrics", metrics)),
        pretrain_arg=raw.get("pretrain_arg", "model.init_args.init_from"),
        reconstruct=raw.get("reconstruct"), reference_row=raw.get("reference_row"),
        seeds=list(range(n_seeds)), paper_source=prof.get("paper_source", raw.get("paper_source", "")),
        extra_args=list(extra_args or []),
        row_order=order, folds=parse_folds(folds if folds is not None else prof.get("folds", raw.get("folds"))),
        engine=_engine(raw.get("executor"), prof.get("executor"), engine),
        primary_metric=_primary(prof.get("primary_metric", raw.get("primary_metric")), all_rows),
        split_seeds=split_seeds,
    )


def _split_seeds(value: Any, n_seeds: int) -> list[int]:
    """``split_seeds``: one distinct integer per seed (``[]``: the default mapping 42 + k)."""
    if value in (None, []):
        return [DEFAULT_SPLIT_SEED + k for k in range(n_seeds)]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InputError("spec: split_seeds", f"{value!r} is not a list of integers", "write e.g. [42, 43, 44]")
    dup = sorted({v for v in value if value.count(v) > 1})
    if dup:
        raise InputError("spec: split_seeds", f"duplicates {dup}: two seeds would score the same test windows",
                         "list each split seed once")
    if len(value) < n_seeds:
        raise InputError("spec: split_seeds", f"{len(value)} split seeds for {n_seeds} seeds",
                         f"list at least {n_seeds} (or use fewer --seeds)")
    return [int(v) for v in value[:n_seeds]]


def _primary(name: Any, rows: list[Row]) -> str:
    """The verdict's metric: an alignment identification (it has per-item hits) that some selected row computes
    (``None``: :data:`DEFAULT_PRIMARY`, which a selection without an aligning row may leave uncomputed)."""
    from chanmusic.results.registry import ALIGN, REGISTRY

    usable = [n for n, s in REGISTRY.items() if s.stage == ALIGN and s.kind == "identification"]
    if name is None:
        return DEFAULT_PRIMARY
    if not any(r.kind == "align" for r in rows):
        usable = []
    if name not in usable:
        raise InputError("spec: primary_metric", f"{name!r} is computed by no row of this comparison "
                         "(the verdict needs per-item hits of an alignment identification)",
                         f"name one of {usable}" if usable else "select a row that aligns (kind: align)")
    return str(name)


def parse_folds(value: Any) -> dict[str, Any] | None:
    """``"subjects k=5"`` / ``"songs k=7"`` or ``{by: subjects, k: 5}`` -> ``{"by": "subjects", "k": 5}``;
    ``None``/``"none"`` -> None."""
    if value in (None, "", "none", False):
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\w+)\s+k\s*=\s*(\d+)\s*", value)
        if not m:
            raise InputError("folds", f"{value!r} is not a fold setting",
                             "write it as `subjects k=5` or `songs k=7`")
        value = {"by": m.group(1), "k": int(m.group(2))}
    if not isinstance(value, dict) or value.get("by") not in ("subjects", "songs") or int(value.get("k", 0)) < 2:
        raise InputError("folds", f"{value!r}: folds are by subjects or songs with k >= 2",
                         "e.g. `subjects k=5` or `songs k=7`")
    return {"by": str(value["by"]), "k": int(value["k"])}


def _engine(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """The executor settings: spec, then profile, then flags (``None`` values in a layer are left out)."""
    from chanmusic.runner.engine import EngineSettings

    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in (layer or {}).items() if v is not None})
    return EngineSettings.from_dict(merged).to_json()


def _substitute(obj: Any, values: dict[str, str]) -> Any:
    if isinstance(obj, str):
        for k, v in values.items():
            obj = obj.replace("{" + k + "}", v)
        return obj
    if isinstance(obj, dict):
        return {k: _substitute(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, values) for v in obj]
    return obj


def deep_merge(a: dict, b: dict) -> dict:
    """``b`` over ``a``, recursively for dicts (lists and scalars replaced)."""
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out
