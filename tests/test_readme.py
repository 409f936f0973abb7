"""The README's "Add a variant" example, run as written: its files saved where their first line
says, then `ganlab-train model=smoothing` from that folder."""

import re
import sys

import yaml

from ganlab.checkpoint import load_model, read_checkpoint
from tests.conftest import FAST, REPO_ROOT, SMALL_DCGAN, run_command


def readme_section(title: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def example_files(section: str) -> dict[str, str]:
    """{path: content} of each python/yaml block whose first line is `# <path>`."""
    files = {}
    for body in re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.DOTALL):
        first = body.splitlines()[0]
        if re.fullmatch(r"# [\w/]+\.(py|yaml)", first):
            files[first[2:]] = body
    return files


def test_the_add_a_variant_example_runs_verbatim(tmp_path, monkeypatch):
    section = readme_section("Add a variant")
    files = example_files(section)
    assert set(files) == {"mypkg/smoothing.py", "conf/model/smoothing.yaml"}
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    assert "`ganlab-train model=smoothing`" in section

    # no PYTHONPATH, no install: the working directory alone makes mypkg importable
    result = run_command(
        "ganlab-train",
        "model=smoothing",
        *FAST,
        *SMALL_DCGAN,
        cwd=tmp_path,
        env={"PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "train" / "smoothing_digits").iterdir()
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["_target_"] == "mypkg.smoothing.LabelSmoothingGAN"
    assert config["model"]["smoothing"] == 0.1
    assert config["model"]["generator"]["_target_"] == "ganlab.networks.DCGANGenerator"
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    assert read_checkpoint(ckpt_path)["ganlab"]["progress"]["d_steps"] == 3  # three batches
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model, _ = load_model(ckpt_path)
        assert type(model).__module__ == "mypkg.smoothing"
        assert type(model).__name__ == "LabelSmoothingGAN" and model.smoothing == 0.1
    finally:
        for name in ("mypkg.smoothing", "mypkg"):
            sys.modules.pop(name, None)

    # ganlab-sample rebuilds the user's class from the checkpoint, from the same folder
    result = run_command(
        "ganlab-sample",
        f"ckpt_path={ckpt_path}",
        "num_samples=4",
        "out=s.npz",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 4 samples of shape (1, 32, 32)" in result.stdout
