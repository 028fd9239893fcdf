"""Where one training step's time goes (benchmarks/step_profile.py, ``python -m benchmarks profile``)."""

from benchmarks import step_profile


def test_profile_times_every_part_of_a_step(tmp_path, monkeypatch, tiny_foam, tiny_unet):
    monkeypatch.setattr(step_profile, "default_network_setups", lambda: {"tiny": tiny_unet})
    rec = step_profile.run_profile(tmp_path, 4, repeats=2, **tiny_foam)
    t = rec["networks"]["tiny"]["seconds"]
    assert set(t) == set(step_profile.PARTS) and all(v > 0 for v in t.values())
    assert rec["command"].startswith("python -m benchmarks profile --slices 4 ")
