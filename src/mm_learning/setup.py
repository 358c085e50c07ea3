"""ament_python build of mm_learning (the learner's ROS-free core and its `mm` command)."""

from setuptools import find_packages, setup

PACKAGE_NAME = "mm_learning"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="Export, check, sign and register quantised servo policies.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "mm = mm_learning.cli:main",
        ],
    },
)
