"""The ``mm`` command: keys, registry queries and export refusals as a user sees them (exit code + message)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from mm_contract.observation import ObsScales
from mm_contract.policy_image import ModelType, PolicyHeader, pack_image
from mm_contract.registry import Registry
from mm_learning.cli import main
from stable_baselines3 import PPO


def test_keygen_prints_the_key_that_pubkey_reads_back(tmp_path, capsys) -> None:
    assert main(["keygen", "--dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    firmware_key = printed.rsplit(": ", 1)[1].strip()
    assert len(firmware_key) == 130 and firmware_key.startswith("04")
    assert main(["pubkey", str(tmp_path / "policy_signing_key.pem")]) == 0
    assert capsys.readouterr().out.strip() == firmware_key
    assert main(["pubkey", str(tmp_path / "policy_signing_key.pub.pem")]) == 0
    assert capsys.readouterr().out.strip() == firmware_key
    assert main(["keygen", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_registry_commands_list_show_and_pick_the_best(tmp_path, capsys) -> None:
    header = PolicyHeader(ModelType.INT16X8, ObsScales(3.0, 40.0, 25.0, 2.0, 0.004), arena_bytes=3552)
    registry = Registry(tmp_path)
    for i, ret in enumerate((-3.0, -1.0)):
        image = pack_image(header, bytes([i]) * 64, lambda _: bytes(64))
        acceptance = {"closed_loop": {"quantized_return": ret}}
        registry.add(image, {"objective": "speed", "created_utc": f"t{i}", "acceptance": acceptance})
    assert main(["registry", "--root", str(tmp_path), "list"]) == 0
    assert capsys.readouterr().out.count("objective=speed") == 2
    assert main(["registry", "--root", str(tmp_path), "best", "speed"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["acceptance"]["closed_loop"]["quantized_return"] == -1.0
    assert main(["registry", "--root", str(tmp_path), "show", best["policy_id"][:10]]) == 0
    assert json.loads(capsys.readouterr().out)["policy_id"] == best["policy_id"]
    assert main(["registry", "--root", str(tmp_path), "best", "energy"]) == 2
    assert "no registered policy for objective 'energy'" in capsys.readouterr().err


def test_export_refuses_a_model_that_does_not_fit_the_servo(tmp_path, capsys) -> None:
    pytest.importorskip("mm_sim", reason="mm_sim not on the path")
    from mm_learning.checkpoints import save_checkpoint
    from mm_learning.trainer import BEST_MODEL, TrainConfig

    # A run directory as `mm train` leaves it, but its best model was trained on another env.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(TrainConfig(out_dir=run).to_json()))
    model = PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=64)
    model.save(run / BEST_MODEL)
    save_checkpoint(run, model, {"steps": 0, "best": {"steps": 0, "metrics": {}}})
    assert main(["keygen", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    key = str(tmp_path / "policy_signing_key.pem")
    out = str(tmp_path / "out")
    assert main(["export", str(run), "--key", key, "--out", out]) == 2
    assert "the servo policy needs (8,)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # The model file instead of its run: the run's config.json says how it was trained, the file does not.
    assert main(["export", str(run / BEST_MODEL), "--key", key]) == 2
    assert "give the run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "no_run"), "--key", key]) == 2
    assert "not a training run's configuration" in capsys.readouterr().err


def test_bag_reindex_completes_a_killed_recording_and_refuses_a_closed_one(tmp_path, capsys) -> None:
    from mm_learning.bags import BagWriter, make_typestore, read_messages

    store = make_typestore()
    with BagWriter(tmp_path / "rec", typestore=store) as bag:
        bag.add_topic("/servo1/note", "std_msgs/msg/String")
        for k in range(3):
            bag.write("/servo1/note", store.types["std_msgs/msg/String"](data=str(k)), k)
        bag.flush()
        unfinished = (tmp_path / "rec" / "rec.mcap").read_bytes()  # what SIGKILL would leave: no summary
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "killed.mcap").write_bytes(unfinished)
    assert main(["bag", "reindex", str(tmp_path / "killed")]) == 0
    out = capsys.readouterr().out
    assert "complete bag with 3 messages" in out and "/servo1/note: 3" in out and "killed.mcap.unfinished" in out
    assert read_messages(tmp_path / "killed").complete
    assert main(["bag", "reindex", str(tmp_path / "killed")]) == 2
    assert "needs no reindex" in capsys.readouterr().err
