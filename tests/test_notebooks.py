"""The notebooks run top to bottom on a CPU, each in a fresh kernel and working directory."""

import shutil

import pytest

from tests.conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason="the dev extra is absent")
nbclient = pytest.importorskip("nbclient", reason="the dev extra is absent")
pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib (dev extra)")
pytest.importorskip("ipykernel", reason="the notebooks need a Python kernel (dev extra)")

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def outputs_text(notebook) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(str(output.get("data", {}).get("text/plain", "")))
            texts.append(str(output.get("data", {}).get("text/markdown", "")))
    return "\n".join(texts)


def test_there_are_the_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["compare_runs.ipynb", "quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.slow
def test_notebook_runs_top_to_bottom(path, tmp_path):
    shutil.copy(path, tmp_path / path.name)
    notebook = nbformat.read(tmp_path / path.name, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = outputs_text(notebook)
    if path.stem == "quickstart":
        assert "checkpoints/last.ckpt" in text and "samples/epoch_0004.png" in text
        assert "'fid':" in text and "'feature_extractor': 'ganlab-digits'" in text
    else:
        assert "| configuration | runs | seeds | fid | is_mean | precision | recall |" in text
        assert "| loss=hinge | 2 | 0, 1 |" in text
