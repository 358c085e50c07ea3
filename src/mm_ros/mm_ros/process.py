"""The ROS lifetime of a node process (the virtual servo, the driver, the learner).

rclpy up, then down again however Ctrl-C or SIGTERM interleaves with what the process is doing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter


@contextmanager
def rclpy_process(args: list[str] | None = None) -> Iterator[None]:
    """``rclpy.init(args=args)`` for the body, ``rclpy.try_shutdown()`` after it; a signal ends it quietly.

    rclpy's signal handler shuts the context down from its own thread, at any point of the body: an executor then
    fails to build its wait set or a publish fails (RCLError and kin, not only ExternalShutdownException), and the
    final ``try_shutdown`` can find the context shut down between its check and its call ("rcl_shutdown already
    called"). Those are the shutdown, and the process exits 0; an exception raised while the context is still up
    is the process's own and propagates.
    """
    rclpy.init(args=args)  # Jazzy's rclpy.init() is not a context manager
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        try:
            rclpy.try_shutdown()
        except RCLError:
            if rclpy.ok():
                raise


def spin_until(executor: Executor, stop: threading.Event, *, period_s: float = 0.05) -> None:
    """Spin `executor` in the calling thread until `stop` is set or its context shuts down (Ctrl-C).

    For an executor spun in a background thread: its owner sets `stop`, joins the thread, and only then shuts
    the executor down and destroys its nodes. `spin_once` in a loop, not `spin()`: shutting an executor down under
    a running `spin()` races its guard conditions; under load the spinning thread then hung past the shutdown
    timeouts, and destroying the node under it ended the process with SIGSEGV.

    A callback that fails because Ctrl-C shut the context down under it (a publish: "publisher's context is
    invalid") ends the loop as the shutdown it is, as in `rclpy_process`; while the context is up it propagates.

    Args:
        executor: the executor to spin.
        stop: set by the owner to end the loop.
        period_s: the longest wait for work per turn (s): how late the loop sees `stop`.
    """
    while not stop.is_set() and executor.context.ok():
        try:
            executor.spin_once(timeout_sec=period_s)
        except ExternalShutdownException:
            pass
        except RCLError:
            if executor.context.ok():
                raise
            return


class SideNode:
    """A node beside `owner`, spun by a thread of its own.

    What high-rate subscriptions need when the owner's executor runs long callbacks: the driver's transport receives
    `state` there, the learner its servos' topics.

    The node is ``<owner>_<suffix>`` in the owner's namespace and context; it takes no command-line arguments (a
    global remap such as ``__node``, which a launch file's name becomes, would give both nodes one name) and starts
    no parameter services. A single-threaded executor runs it in `spin_until`; `destroy` stops the thread, then shuts
    the executor down, then destroys the node, the order `spin_until` needs.
    """

    def __init__(self, owner: Node, suffix: str, *, parameter_overrides: Sequence[Parameter] = ()) -> None:
        """Create the node (with `parameter_overrides`) and start spinning it."""
        self.node = Node(
            f"{owner.get_name()}_{suffix}",
            namespace=owner.get_namespace(),
            context=owner.context,
            use_global_arguments=False,
            start_parameter_services=False,
            parameter_overrides=list(parameter_overrides),
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=spin_until, args=(self._executor, self._stop), name=self.node.get_name(), daemon=True
        )
        self._thread.start()

    def destroy(self) -> None:
        """Stop the thread (waiting up to 5 s), shut the executor down (up to 2 s), destroy the node."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
