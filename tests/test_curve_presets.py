"""benchmarks/curve_presets.py: the issue-28 grid and the validation recipe grid are what they say (argv only)."""
import argparse

from benchmarks.curve_presets import jobs


def grid(preset, **kw):
    a = dict(preset=preset, out="OUT", gens="demo,dipole,tracking", snrs="-9,-16", rows=None, steps=800, every=200,
             threads=1, score="test", no_pretrain=False)
    a.update(kw)
    return jobs(argparse.Namespace(**a))


def test_issue28_runs_three_rows_on_three_generators_at_two_snrs_with_one_budget():
    runs = grid("issue28")
    assert {(g, s) for g, s, _ in runs} == {(g, s) for g in ("demo", "dipole", "tracking") for s in (-9.0, -16.0)}
    assert sorted({r[1] for _, _, r in runs}) == ["block_tokens", "channel_oriented", "linear_reference"]
    for gen, snr, r in runs:
        assert r[r.index("--steps") + 1] == "800" and r[r.index("--every") + 1] == "200"  # same steps, every row
        assert "--no-control" not in r and "--control-only" not in r  # music and control at the same checkpoints
        data_cfg = {"demo": None, "dipole": "data/synthetic_dipole.yaml", "tracking": "data/synthetic_tracking.yaml"}
        if data_cfg[gen]:
            assert data_cfg[gen] in r[r.index("--") + 1:]
        pre = r[r.index("--pretrain") + 1] if "--pretrain" in r else None
        if r[1] == "linear_reference":
            assert pre is None
        else:  # the paper's row and block tokens each pretrain (block tokens its own encoder) on the same data
            assert pre.split(",")[0] == "pretrain/channel_oriented.yaml"
            assert ("ablations/block_tokens.yaml" in pre) == (r[1] == "block_tokens")
            assert (data_cfg[gen] in pre) if data_cfg[gen] else True
        assert r[3].endswith(f"data/{gen}{snr:+g}/nmed-t")
    assert all("--pretrain" not in r for _, _, r in grid("issue28", no_pretrain=True))


def test_the_recipe_grid_is_gain_by_skip_scored_on_validation():
    runs = grid("recipe", snrs="-9", score="val,test")
    assert len(runs) == 12
    combos = set()
    for _, _, r in runs:
        assert r[r.index("--score") + 1] == "val,test"
        extra = r[len(r) - r[::-1].index("--"):]
        g = extra[extra.index("--model.init_args.encoder.init_args.channel_gain") + 1]
        s = extra[extra.index("--model.init_args.encoder.init_args.linear_skip") + 1]
        assert r[1] == f"co_gain{int(g == 'true')}_skip{int(s == 'true')}"
        combos.add((g, s))
    assert combos == {(g, s) for g in ("true", "false") for s in ("true", "false")}
