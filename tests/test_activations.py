"""The one NumPy activation registry: names resolve the same for Dense modules and CrossEncoder heads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightembed import activations
from lightembed.activations import GELU, Identity, ReLU, Sigmoid, SiLU, Softmax, Tanh


def test_gelu_is_the_exact_erf_form_to_float32_rounding():
    x = np.linspace(-12, 12, 20001).astype(np.float32)
    # erfc keeps its precision where 1 + erf(x) cancels (large negative x)
    exact = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)], dtype=np.float32)
    got = GELU()(x)
    assert got.dtype == np.float32
    # within two float32 ulps of the exact value everywhere
    ulps = np.abs(got - exact) / np.spacing(np.abs(exact))
    assert ulps.max() <= 2, (x[ulps.argmax()], ulps.max())


@pytest.mark.parametrize(
    "name, cls",
    [
        ("torch.nn.modules.activation.GELU", GELU),
        ("torch.nn.modules.activation.Tanh", Tanh),
        ("torch.nn.modules.linear.Identity", Identity),
        ("torch.nn.modules.activation.SiLU", SiLU),
        ("torch.nn.Sigmoid", Sigmoid),
        ("torch.nn.functional.relu", ReLU),
        ("torch.softmax", Softmax),
        (None, Identity),
    ],
)
def test_config_names_resolve_to_one_class(name, cls):
    assert activations.from_config(name, "test") == cls()
    if name is not None:
        assert activations.as_activation(name) == cls()


def test_unknown_names_are_errors_naming_the_place():
    with pytest.raises(ValueError, match="in my/config.json"):
        activations.from_config("torch.nn.modules.activation.Mish", "my/config.json")
    assert activations.from_trusted_path("my_pkg.Custom", trust_remote_code=False) is None


def test_silu_and_sigmoid_do_not_overflow():
    x = np.array([-1000.0, 0.0, 1000.0], dtype=np.float32)
    np.testing.assert_allclose(Sigmoid()(x), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(SiLU()(x), [0.0, 0.0, 1000.0])
