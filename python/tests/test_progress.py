"""Progress reports of long phases: throttling, and the ImageNet folder scan and evaluation that send them."""
import pytest
import torch

from trqat import progress
from trqat.data import build_data

from test_data import Image, imagenet_config, write_image_folder


@pytest.fixture
def reports(monkeypatch):
    got = []
    progress.set_sink(lambda phase, done, total: got.append((phase, done, total)))
    yield got
    progress.set_sink(None)


def test_throttled_to_the_first_and_the_last(reports, monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 60.0)
    for done in range(1, 11):
        progress.report("eval", done, 10)
    progress.report("eval", 3, 10)  # a new evaluation reports its start again
    assert reports == [("eval", 1, 10), ("eval", 10, 10), ("eval", 3, 10)]


def test_without_a_sink_nothing_happens():
    progress.set_sink(None)
    progress.report("eval", 1, 2)  # no error, no output


@pytest.mark.skipif(Image is None, reason="PIL is not installed")
def test_imagenet_scan_reports_class_folders(reports, monkeypatch, tmp_path):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    write_image_folder(tmp_path, classes=("ant", "bee", "cat"), train_per_class=2, val_per_class=1)
    data = build_data(imagenet_config(tmp_path), 0, torch.device("cpu"))
    assert len(data.train) == 6 and len(data.test) == 3
    done = [d for phase, d, total in reports if phase == "data" and total == 6]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 6  # train folders 0..2, val 3..5, then all 6
    assert {3, 4, 5} <= set(done)


def test_phases_are_announced_once_and_timed(reports, monkeypatch):
    clock = iter([10.0, 10.0, 12.5, 12.5, 13.0])  # phase() then report(), twice; then phase_seconds()
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "_phase_started", {})
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    progress.phase("data")
    progress.phase("model")
    assert reports == [("data", 0, None), ("model", 0, None)]
    assert progress.phase_seconds() == {"data": 2.5, "model": 0.5}
