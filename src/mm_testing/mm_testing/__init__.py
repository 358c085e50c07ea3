"""mm_testing: what the workspace's tests share, as ros2_control_demos keeps its test utilities in a package.

Each package's tests live in its own `test/` folder (run by `colcon test` and by `make test`); helpers one
package's tests share sit beside them (pytest's `pythonpath` setting in pyproject.toml makes them importable).
This package holds the workspace-wide ones and depends on no workspace package, so every package can
test_depend on it: `ros_support` (node processes, parameter files, clients of the cross-process tests),
`ctest_support`, `fw_support` (firmware-core images and backends), `toy_servo` (a tiny Gymnasium servo),
`paths` (the repository root), and `plugin`, the pytest plugin (entry point `pytest11`) with the `report` fixture.
"""
