"""Offscreen rendering of the twin: frames, PNG files and GIF/MP4 animations.

MuJoCo chooses its OpenGL backend when it is imported; `import mm_sim` selects EGL (software rendering works
without a display) on a Linux machine with no display, unless MUJOCO_GL is already set.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imageio.v2
import imageio.v3 as iio
import mujoco
import numpy as np
from mm_contract.profiles import load_profile
from numpy.typing import NDArray

from mm_sim.errors import MmSimError
from mm_sim.model import Plant


class SceneRenderer:
    """Renders a plant from the front, its target shown as a translucent green arm."""

    def __init__(self, plant: Plant, *, width: int = 320, height: int = 240) -> None:
        """Create the OpenGL context for `plant` (width × height pixels).

        Raises:
            MmSimError: no OpenGL context could be made (set MUJOCO_GL=egl on a machine without display).
        """
        self._plant = plant
        try:
            self._renderer = mujoco.Renderer(plant.model, height=height, width=width)
        except Exception as error:  # MuJoCo raises plain exceptions for a missing OpenGL context
            msg = f"cannot render ({error}); on a machine without a display set MUJOCO_GL=egl before starting"
            raise MmSimError(msg) from error

    def frame(self, target_rad: float) -> NDArray[np.uint8]:
        """An RGB image (height × width × 3) of the plant's present state with the target at `target_rad`."""
        data = self._plant.data
        # The target marker is a mocap body: turning it moves nothing in the simulation, and kinematics alone
        # (no time step) brings its pose up to date for the scene.
        data.mocap_quat[0] = (math.cos(target_rad / 2.0), 0.0, math.sin(target_rad / 2.0), 0.0)
        mujoco.mj_kinematics(self._plant.model, data)
        self._renderer.update_scene(data, camera="front")
        return self._renderer.render()

    def close(self) -> None:
        """Release the OpenGL context."""
        self._renderer.close()


def save_png(path: Path, frame: NDArray[np.uint8]) -> None:
    """Write one frame as a PNG file."""
    iio.imwrite(path, frame)


def save_animation(path: Path, frames: Sequence[NDArray[np.uint8]], fps: float) -> None:
    """Write frames as an animation: GIF for a `.gif` path, MP4 (H.264 via imageio-ffmpeg) for `.mp4`.

    Raises:
        MmSimError: another file type was asked for.
    """
    if path.suffix == ".gif":
        iio.imwrite(path, frames, duration=1000.0 / fps, loop=0)
    elif path.suffix == ".mp4":
        # The ffmpeg plugin (imageio-ffmpeg ships the binary) only speaks imageio's v2 API.
        imageio.v2.mimwrite(path, list[Any](frames), format="FFMPEG", fps=fps, codec="libx264", macro_block_size=8)
    else:
        msg = f"cannot write {path.name!r}: give a .gif or .mp4 file name"
        raise MmSimError(msg)


def render_loads(out_dir: Path, *, profile_name: str = "mm_v3", angle_rad: float = 0.9) -> list[Path]:
    """Write one PNG per load of a profile, the load at `angle_rad` and its target 0.6 rad further."""
    profile = load_profile(profile_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for load_name, load in profile.loads.items():
        plant = Plant(profile, load)
        plant.reset(angle_rad)
        renderer = SceneRenderer(plant, width=480, height=360)
        path = out_dir / f"load_{load_name}.png"
        save_png(path, renderer.frame(angle_rad + 0.6))
        renderer.close()
        written.append(path)
    return written


def main(args: list[str] | None = None) -> None:
    """Write the documentation images: `python -m mm_sim.render --out docs/images`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for load_<name>.png")
    parser.add_argument("--profile", default="mm_v3", help="profile whose loads are drawn")
    options = parser.parse_args(args)
    for path in render_loads(options.out, profile_name=options.profile):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
