"""The learner node's parameter defaults and config/learner.yaml are one source of truth: the same keys and values."""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("rclpy")
from mm_learning.learner_node import _PARAMETERS
from mm_testing.paths import REPO

LEARNER_YAML = REPO / "src/mm_learning/config/learner.yaml"


def test_learner_yaml_holds_every_node_default() -> None:
    (section,) = yaml.safe_load(LEARNER_YAML.read_text()).values()
    values = section["ros__parameters"]
    assert set(values) == set(_PARAMETERS)
    for name, (default, description) in _PARAMETERS.items():
        assert values[name] == default, name
        assert type(values[name]) is type(default), f"{name}: the yaml's type would change the declared type"
        assert description
