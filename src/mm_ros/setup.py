from setuptools import find_packages, setup

package_name = "mm_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs the package's test/ folder with pytest
    zip_safe=False,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="The ROS glue shared by the Muscle Memory nodes: process lifetime, diagnostics, parameters.",
    license="Apache-2.0",
)
