"""ganlab-summary's rows: configurations told apart by overrides and by scoring protocol."""

import json

import yaml

from ganlab.summary import main as summary_main
from ganlab.summary import summarize


def write_run(run_dir, overrides, seed, fid, num_generated=100, extractor="ganlab-digits"):
    """A finished run's files as ganlab-train writes them: config.yaml, Hydra's overrides, and
    metrics.json with one evaluation and its protocol."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "model": {}}))
    protocol = {
        "num_generated": num_generated,
        "latents": {"seed": 0, "indices": [0, num_generated]},
        "feature_extractor": extractor,
        "reference": {"dataset": "digits", "split": "train", "count": 1437, "seed": seed},
        "epoch": 9 + seed,  # when it was scored: never a configuration
        "step": 100 * seed,
        "world_size": 1 + seed,
    }
    record = {"scores": {"fid": fid}, "protocol": protocol}
    (run_dir / "metrics.json").write_text(json.dumps([record]))


def table_rows(capsys, root):
    assert summary_main([str(root), "--metrics", "fid"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| configuration | runs | seeds | fid |"
    return {line.split(" | ")[0].strip("| "): line for line in lines[2:]}


def test_a_seed_sweep_is_one_row_that_names_its_seeds(tmp_path, capsys):
    for seed, fid in enumerate([2.0, 4.0, 6.0]):
        write_run(tmp_path / f"{seed}_dcgan_digits", ["model=dcgan"], seed, fid)
    rows = table_rows(capsys, tmp_path)
    assert rows == {"model=dcgan": "| model=dcgan | 3 | 0, 1, 2 | 4 ± 2 |"}


def test_runs_of_the_defaults_alone_are_labelled_as_such(tmp_path, capsys):
    for seed in (0, 1):
        write_run(tmp_path / str(seed), [], seed, 3.0)
    assert table_rows(capsys, tmp_path) == {"(defaults)": "| (defaults) | 2 | 0, 1 | 3 ± 0 |"}


def test_scores_of_different_protocols_never_share_a_row(tmp_path, capsys):
    # the same overrides, scored on 100 and on 5000 samples (callbacks.sample_quality.num_samples)
    write_run(tmp_path / "a0", ["loss=hinge"], 0, 9.0, num_generated=100)
    write_run(tmp_path / "a1", ["loss=hinge"], 1, 11.0, num_generated=100)
    write_run(tmp_path / "b0", ["loss=hinge"], 0, 2.0, num_generated=5000)
    write_run(tmp_path / "c0", ["loss=bce"], 0, 3.0, num_generated=5000)
    assert sorted(table_rows(capsys, tmp_path).values()) == [
        "| loss=bce eval.num_generated=5000 | 1 | 0 | 3 |",
        "| loss=hinge eval.num_generated=100 | 2 | 0, 1 | 10 ± 1.4 |",
        "| loss=hinge eval.num_generated=5000 | 1 | 0 | 2 |",
    ]


def test_a_different_feature_extractor_is_a_different_configuration(tmp_path):
    write_run(tmp_path / "a", [], 0, 1.0, extractor="ganlab-digits")
    write_run(tmp_path / "b", [], 1, 2.0, extractor="inception-v3-compat")
    rows = summarize(tmp_path, ["fid"])
    assert [row["configuration"] for row in rows] == [
        "eval.feature_extractor=ganlab-digits",
        "eval.feature_extractor=inception-v3-compat",
    ]
    assert [row["fid"][0] for row in rows] == [1.0, 2.0]


def test_a_run_without_scores_adds_no_protocol_difference(tmp_path):
    write_run(tmp_path / "a", ["loss=bce"], 0, 1.0)
    write_run(tmp_path / "b", ["loss=bce"], 1, 3.0)
    (tmp_path / "c" / ".hydra").mkdir(parents=True)  # stopped before its first evaluation
    (tmp_path / "c" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["loss=bce"]))
    (tmp_path / "c" / "config.yaml").write_text(yaml.safe_dump({"seed": 2}))
    (row,) = summarize(tmp_path, ["fid"])
    assert (row["configuration"], row["runs"], row["seeds"]) == ("loss=bce", 3, [0, 1, 2])
    assert row["fid"] == (2.0, 2**0.5, 2)  # mean, std, number of runs with the score
