"""Muscle Memory learner core: export, check, sign and register quantised servo policies.

The modules are ROS-free so the trainer, the learner node, benches and tests share them:

- :mod:`mm_learning.errors` — the package's exception types.
- :mod:`mm_contract.policy_image` — the servo-contract §5 policy image (pack/parse, ``policy_crc32``).
- :mod:`mm_contract.signing` — ECDSA P-256 keys, signatures and the firmware public-key string.
- :mod:`mm_learning.actor` — the deterministic actor of an SB3 model as plain weights, float and Keras forms.
- :mod:`mm_learning.quantize` — integer-only TFLite conversion and the TFLite Micro runtime.
- :mod:`mm_learning.acceptance` — the checks a quantised policy must pass before the servo may run it.
- :mod:`mm_learning.export` — the one checked export command (artifacts + signed image).
- :mod:`mm_contract.registry` — accepted policies on disk under their content hash.
"""
