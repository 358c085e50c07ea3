"""ament_python build of mm_bringup: launch files, parameter overrides, rviz config and the composed runner."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "mm_bringup"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE_NAME}/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs the package's test/ folder with pytest
    zip_safe=True,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="Launch files, parameters, rviz config and composed runner for Muscle Memory servos.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["run = mm_bringup.run:main"]},
)
