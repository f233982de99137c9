"""Measured speeds kept between runs (model/speed_store.py): no calibration in every process."""

from __future__ import annotations

import json

import pytest

from model.engine import Engine
from model.generation import Speeds
from model.speed_store import KEPT_SETUPS, SpeedStore, setup_key


def test_speeds_measured_once_are_known_to_the_next_process(tmp_path):
    path = tmp_path / "speeds.json"
    Speeds(store=SpeedStore(path, "model a | cpu")).record(512, 2.0, 32, 4.0)
    assert Speeds(store=SpeedStore(path, "model a | cpu")).or_slow() == (256.0, 8.0)
    assert not Speeds(store=SpeedStore(path, "model b | cpu")).measured()  # another setup measures its own


def test_a_short_prefill_does_not_drag_a_known_speed_down():
    speeds = Speeds()
    speeds.record(40, 1.0, 8, 1.0)  # nothing known yet: the short prompt's speed stands in
    speeds.record(1024, 2.0, 8, 1.0)
    speeds.record(40, 1.0, 8, 1.0)  # a follow-up question on a cached document: not counted
    assert speeds.prefill == 0.7 * 40 + 0.3 * 512


def test_a_damaged_or_unwritable_store_is_ignored(tmp_path):
    damaged = tmp_path / "speeds.json"
    damaged.write_text("{not json")
    assert not Speeds(store=SpeedStore(damaged, "k")).measured()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    Speeds(store=SpeedStore(blocked / "speeds.json", "k")).record(512, 1.0, 8, 1.0)  # no error
    assert set(tmp_path.iterdir()) == {damaged, blocked}  # nothing left behind


def test_the_store_keeps_the_latest_setups_only(tmp_path):
    path = tmp_path / "speeds.json"
    for number in range(KEPT_SETUPS + 5):
        SpeedStore(path, f"setup {number}").save(100.0, 10.0)
    entries = json.loads(path.read_text())
    assert len(entries) == KEPT_SETUPS and "setup 0" not in entries and f"setup {KEPT_SETUPS + 4}" in entries


def test_an_engine_on_a_measured_setup_does_not_calibrate(tiny_loaded, tmp_path, monkeypatch):
    store = tmp_path / "speeds.json"
    first = Engine(tiny_loaded, speed_store=SpeedStore(store, setup_key("tiny")))
    measured = first.throughput()  # a calibration generation
    second = Engine(tiny_loaded, speed_store=SpeedStore(store, setup_key("tiny")))
    monkeypatch.setattr(second, "generate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("calibrated")))
    assert second.throughput() == pytest.approx(measured, rel=1e-3)
