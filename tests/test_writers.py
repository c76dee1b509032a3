"""The progress line: its rate, and an ETA that leaves compilation out."""

from msunet import writers


def test_eta_comes_from_steady_steps_only(monkeypatch):
    clock = iter([0.0, 60.0, 70.0, 80.0])  # 60 s to step 10 (compiling), then 1 step/s
    monkeypatch.setattr(writers.time, "perf_counter", lambda: next(clock))
    progress = writers.Progress(first_step=0, num_steps=100)
    first, rate = progress.line(10, 0.5)
    assert "ETA ?" in first and rate == 10 / 60
    second, rate = progress.line(20, 0.4)
    assert rate == 1.0 and "ETA 1m20s" in second
    third, _ = progress.line(30, 0.3)
    assert "ETA 1m10s" in third


def test_durations_read_as_people_write_them():
    assert writers.format_duration(42) == "42s"
    assert writers.format_duration(185) == "3m05s"
    assert writers.format_duration(3720) == "1h02m"
    assert writers.format_duration(float("inf")) == "?"
