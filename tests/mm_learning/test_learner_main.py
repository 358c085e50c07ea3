"""The learner process exits cleanly on Ctrl-C wherever the executor is: seen once at the end of a 300 s online
goal, where SIGINT invalidated the context while the executor built its wait set (RCLError, exit code 1)."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
import rclpy
from rclpy._rclpy_pybind11 import RCLError

from mm_learning import learner_node


@pytest.mark.parametrize("ctrl_c", [True, False])
def test_an_invalid_context_under_the_executor_ends_main_only_after_a_shutdown(
    ctrl_c: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Executor:
        """Fails like rclpy's executor does when the context is gone (or, with it up, for a reason of its own)."""

        def add_node(self, node: object) -> None:
            self.node = node

        def spin(self) -> None:
            if ctrl_c:
                rclpy.shutdown()  # what the SIGINT handler does
            raise RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(learner_node, "LearnerNode", object)
    monkeypatch.setattr(learner_node, "MultiThreadedExecutor", Executor)
    if ctrl_c:
        learner_node.main([])  # returns: exit code 0
    else:
        with pytest.raises(RCLError):
            learner_node.main([])
    assert not rclpy.ok()
