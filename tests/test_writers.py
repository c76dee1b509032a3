"""Where metrics go: the JSONL and TensorBoard writer, and the progress line (its rate, and an
ETA that leaves compilation out)."""

import json

from msunet import writers


def test_metric_writer_logs_jsonl_and_tensorboard_and_forgets_repeated_steps(tmp_path):
    jsonl, events = tmp_path / "run" / "metrics.jsonl", tmp_path / "run" / "tensorboard"
    writer = writers.MetricWriter(jsonl, events)
    for step in (2, 4, 6):
        writer.write_scalars(step, {"train_loss": 1.0 / step, "epoch": step / 4})
    writer.forget_after(4)  # a run resumed from step 4 repeats step 6
    writer.write_scalars(6, {"train_loss": 0.5})
    writer.close()
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4, 6]
    assert rows[0] == {"step": 2, "train_loss": 0.5, "epoch": 0.5}
    assert rows[-1] == {"step": 6, "train_loss": 0.5}
    assert list(events.glob("events.out.tfevents.*"))


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
