"""ament_python build of mm_learning (the learner's ROS-free core and its `mm` command)."""

from setuptools import find_packages, setup

PACKAGE_NAME = "mm_learning"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    # The algorithm presets are read with importlib.resources, so they travel inside the package.
    package_data={PACKAGE_NAME: ["presets/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/config", ["config/learner.yaml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs the package's test/ folder with pytest
    zip_safe=True,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="Train servo policies for an objective, export, check, sign and register them; the learner node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mm = mm_learning.cli:main",
            "learner = mm_learning.learner_node:main",
            "recorder = mm_learning.recorder_node:main",
        ],
    },
)
