"""The comparison spec: ``experiments/paper.yaml`` read into :class:`Spec` (rows, ablations, one resolved profile).

A spec file lists ``rows`` (the main table) and ``ablations``, each a :class:`Row` (a YAML list of configs run
as one kind of step), plus ``profiles`` (``quick``, ``full``: seeds, base configs, settings written after the
configs). :func:`load_spec` resolves one profile (``{out}`` becomes the output folder); :func:`deep_merge` is
the merge rule for every settings layer of the runner. A profile may also name its ``rows`` (the default
selection), ``folds`` (e.g. ``subjects k=5``: every run once per fold of held-out subjects) and ``executor``
(where steps run: :class:`chanmusic.runner.engine.EngineSettings`); the spec's top level may set the last two
for every profile.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chanmusic.core.errors import InputError

import yaml

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
DEFAULT_SPEC = EXPERIMENTS / "paper.yaml"
# the Lightning entry points each kind of step runs, in order
STEP_COMMANDS = {"pretrain": ("fit",), "align": ("fit", "test"), "reconstruct": ("test", "predict")}


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
    for r in all_rows:  # the profile may leave out some rows' controls (e.g. the demo: the audio oracle's)
        if r.name in (prof.get("no_control") or []):
            r.control = False
    n_seeds = int(seeds if seeds is not None else prof.get("seeds", 1))
    if n_seeds < 1:
        raise InputError("--seeds", f"{n_seeds} seeds", "use at least 1")
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
        seeds=list(range(n_seeds)), paper_source=raw.get("paper_source", ""), extra_args=list(extra_args or []),
        row_order=order, folds=parse_folds(folds if folds is not None else prof.get("folds", raw.get("folds"))),
        engine=_engine(raw.get("executor"), prof.get("executor"), engine),
    )


def parse_folds(value: Any) -> dict[str, Any] | None:
    """``"subjects k=5"`` or ``{by: subjects, k: 5}`` -> ``{"by": "subjects", "k": 5}``; ``None``/``"none"`` -> None."""
    if value in (None, "", "none", False):
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\w+)\s+k\s*=\s*(\d+)\s*", value)
        if not m:
            raise InputError("folds", f"{value!r} is not a fold setting", "write it as `subjects k=5`")
        value = {"by": m.group(1), "k": int(m.group(2))}
    if not isinstance(value, dict) or value.get("by") != "subjects" or int(value.get("k", 0)) < 2:
        raise InputError("folds", f"{value!r}: folds are by subjects with k >= 2", "e.g. `subjects k=5`")
    return {"by": "subjects", "k": int(value["k"])}


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
