"""mm_contract: the servo contract in Python, the ground floor every other package stands on.

ROS-free and light (numpy, PyYAML, cryptography; TFLite Micro only for `tflm`): a robot host installs it with
the driver and without the simulator or the learner.

- `profiles`, `description`: the servo, its loads, and the MJCF/URDF text built from them.
- `observation`: the firmware's sensing (contract sections 2-3) in float32.
- `objectives`, `metrics`: what "best" means (reward terms, named objectives and their mixes, one parser) and the
  step metrics every comparison uses.
- `policy_image`, `signing`, `registry`, `tflm`: the policy image format, its signature, the policy store and the
  TFLite Micro runtime the servo runs a policy with.
"""
