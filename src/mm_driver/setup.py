"""ament_python build of mm_driver (the driver node and its ROS-free cores)."""

from setuptools import find_packages, setup

PACKAGE_NAME = "mm_driver"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/config", ["config/driver.yaml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs the package's test/ folder with pytest
    zip_safe=True,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="Driver node for one Muscle Memory servo: micro-ROS topics or CAN, MoveTo, policy deployment.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["driver = mm_driver.driver_node:main", "trajectory = mm_driver.trajectory_node:main"]
    },
)
