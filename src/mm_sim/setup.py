from setuptools import find_packages, setup

package_name = "mm_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    # Tuned gains are read with importlib.resources, so they ship inside the Python package.
    package_data={package_name: ["data/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml", "README.md"]),
        ("share/" + package_name + "/config", ["config/virtual_servo.yaml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # colcon test runs the package's test/ folder with pytest
    zip_safe=False,
    maintainer="Muscle Memory ROS maintainers",
    maintainer_email="maintainers@musclememory-ros.org",
    description="ROS-free MuJoCo twin of the Muscle Memory servo, its Gymnasium env and PID baseline.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "rollout = mm_sim.cli:main",
            "virtual_servo = mm_sim.twin_node:main",
        ],
    },
)
