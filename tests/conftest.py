import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# Tests compare onnxruntime's fp32 with torch tightly: backend=None must not turn into OpenVINO bf16 on an AMX
# CPU with the openvino extra installed. tests/test_openvino_backend.py tests that choice with this unset.
import os  # noqa: E402

os.environ.setdefault("LIGHTEMBED_BACKEND", "onnx")
# Exports in tests skip timing the backends (seconds each, dozens of exports); tests/test_tune.py tests the default.
os.environ.setdefault("LIGHTEMBED_EXPORT_TUNE", "0")
# OpenVINO's compiled-model cache in a folder of this test run, not the user's ~/.cache: a cache filled by other
# processes' runs once made OpenVINO crash in infer (issue 22's notes), and tests must not depend on what is there.
import tempfile  # noqa: E402

os.environ.setdefault("LIGHTEMBED_OPENVINO_CACHE", tempfile.mkdtemp(prefix="lightembed-ov-cache-"))

# In CI (CI=true) a skip fails the run unless its reason names CUDA; `slow` tests run only with LIGHTEMBED_SLOW=1:
# see tests/ci_skips.py.
from tests.ci_skips import (  # noqa: E402, F401
    pytest_collection_modifyitems,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)


@pytest.fixture
def tiny_model(tmp_path):
    from tests.tiny import make_model

    return make_model(tmp_path / "tiny")
