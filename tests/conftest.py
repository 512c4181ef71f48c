import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("LIGHTEMBED_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set LIGHTEMBED_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_model(tmp_path):
    from tests.tiny import make_model

    return make_model(tmp_path / "tiny")
