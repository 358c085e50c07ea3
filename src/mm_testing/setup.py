from setuptools import find_packages, setup

package_name = "mm_testing"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="Helpers and the pytest plugin shared by the Muscle Memory packages' tests.",
    license="Apache-2.0",
    # pytest loads the plugin (the `report` fixture) wherever the workspace is sourced: make test and colcon test.
    entry_points={"pytest11": ["mm_testing = mm_testing.plugin"]},
)
