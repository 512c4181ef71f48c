"""Without huggingface_hub (the slim serving image prunes it: deploy/prune.txt), a local folder still loads and a
Hub repo id is a clear FileNotFoundError naming the missing package, not a ModuleNotFoundError traceback."""

from __future__ import annotations

import sys

import pytest

from lightembed import SentenceTransformer
from lightembed.cli import main
from tests.tiny import make_model


@pytest.fixture
def no_hub(monkeypatch):
    for name in [m for m in sys.modules if m == "huggingface_hub" or m.startswith("huggingface_hub.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` now raises ImportError


def test_local_folder_loads_without_huggingface_hub(no_hub, tmp_path):
    model = SentenceTransformer(make_model(tmp_path / "tiny"), device="cpu")
    assert model.encode(["hello"]).shape[0] == 1


def test_repo_id_without_huggingface_hub_is_a_clear_error(no_hub):
    with pytest.raises(FileNotFoundError, match="needs huggingface_hub.*local model folder"):
        SentenceTransformer("some-org/some-model", device="cpu")


def test_cli_reports_it_without_a_traceback(no_hub, capsys):
    assert main(["encode", "some-org/some-model", "hello"]) != 0
    err = capsys.readouterr().err
    assert "needs huggingface_hub" in err and "Traceback" not in err
