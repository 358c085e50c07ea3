"""mm_driver: the driver of one Muscle Memory servo (real or virtual).

ROS-free cores, usable and tested without ROS:

- `transport`: the servo link's data types (`Command`, `ServoSample`, `Chunk`, `Ack`) and the `Transport`
  interface; `can_transport.CanTransport` implements it over python-can + ISO-TP, `ros_transport.RosTransport`
  over the servo's micro-ROS topics.
- `deploy`: cuts a policy image into chunks, sends them, resends what the servo reports missing and waits for
  its verdict (`Deployer`).
- `supervisor`: MoveTo goal validation, settle detection and the shared metrics (`MoveSupervisor`).

`driver_node` is the lifecycle node `driver` that ties them to ROS.
"""

from mm_driver.errors import DriverError, GoalRejected

__all__ = ["DriverError", "GoalRejected"]
