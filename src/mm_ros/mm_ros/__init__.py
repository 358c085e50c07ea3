"""mm_ros: the ROS glue every node of the workspace shares.

- `process`: a node process's rclpy lifetime (init, executor, signals, exit code 0).
- `entities`: destroying a node's publishers, subscriptions, services and action servers.
- `diagnostics`: the /diagnostics status builder of the driver and the recorder.
- `parameters`: a node's parameters declared once, as dataclass fields; descriptors, checks and YAML files from it.
- `single_goal`: one running goal per action server, tracked by its goal handle (the learner's Train server).
"""
