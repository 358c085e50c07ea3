"""The `rollout` command and the rendering a user sees."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mm_sim.cli import main


def test_rollout_prints_one_json_line_per_move(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "gimbal_bldc", "--load", "inertia_disk", "--moves", "2", "--json"]) == 0
    moves = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [m["move"] for m in moves] == [0, 1]
    assert all(m["settling_time_s"] is not None and m["energy_j"] > 0.0 for m in moves)


def test_rollout_zero_controller_leaves_the_load_where_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--load", "inertia_disk", "--controller", "zero", "--moves", "1", "--json"]) == 0
    move = json.loads(capsys.readouterr().out)
    assert move["settling_time_s"] is None
    assert move["energy_j"] == 0.0


def test_rollout_reports_bad_input_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "elbow"]) == 2
    assert "no profile named 'elbow'" in capsys.readouterr().err
    assert main(["--load", "anvil"]) == 2
    assert "has no load 'anvil'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_rollout_saves_an_animation(tmp_path: Path, egl_subprocess_env: dict[str, str], suffix: str) -> None:
    video = tmp_path / f"move{suffix}"
    result = subprocess.run(
        [sys.executable, "-m", "mm_sim.cli", "--moves", "1", "--move-s", "0.4", "--video", str(video)],
        env=egl_subprocess_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert f"wrote {video} (10 frames)" in result.stdout
    magic = video.read_bytes()[:12]
    assert magic.startswith(b"GIF89a") if suffix == ".gif" else magic[4:8] == b"ftyp"


@pytest.mark.slow
def test_documentation_images_show_each_load(tmp_path: Path, egl_subprocess_env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "mm_sim.render", "--out", str(tmp_path)],
        env=egl_subprocess_env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    import imageio.v3 as iio

    images = {name: iio.imread(tmp_path / f"load_{name}.png") for name in ("inertia_disk", "pendulum", "spring")}
    for image in images.values():
        assert image.shape == (360, 480, 3)
        assert (image.sum(axis=2) > 100).mean() > 0.02  # something is drawn
    blue = {name: ((im[..., 2] > 180) & (im[..., 0] < 100)).sum() for name, im in images.items()}
    assert blue["spring"] > 500 > blue["inertia_disk"]  # the torsion spring is drawn only on the spring load
