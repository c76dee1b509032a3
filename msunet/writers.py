"""Where metrics go: TensorBoard event files, a metrics.jsonl, and a progress line.

TensorBoard files are written with the `tensorboard` package's own EventFileWriter, because
`clu.metric_writers` and `flax.metrics.tensorboard` import TensorFlow.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
    """Scalars as TensorBoard events in `tensorboard_dir` and as one JSON object per logged step
    in `jsonl_path` (a run's are `Workdir.tensorboard_dir` and `Workdir.metrics_file`)."""

    def __init__(self, jsonl_path: str | pathlib.Path, tensorboard_dir: str | pathlib.Path,
                 ) -> None:
        self.jsonl_path = pathlib.Path(jsonl_path)
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        self._events = EventFileWriter(str(tensorboard_dir))
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    def forget_after(self, step: int) -> None:
        """Drop the JSONL rows logged after `step` (a resumed run repeats those steps)."""
        self._jsonl.close()
        rows = [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line]
        kept = "".join(json.dumps(row) + "\n" for row in rows if row["step"] <= step)
        self.jsonl_path.write_text(kept)
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Log `scalars` at `step` to both TensorBoard and the JSONL file."""
        values = {key: float(value) for key, value in scalars.items()}
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=key, simple_value=value) for key, value in values.items()
        ])
        self._events.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self.flush()

    def flush(self) -> None:
        self._events.flush()
        self._jsonl.flush()

    def close(self) -> None:
        self._events.close()
        self._jsonl.close()


def format_duration(seconds: float) -> str:
    """1h02m, 3m05s or 42s."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Steps/s between calls, and an ETA from steady steps only.

    The first interval holds the compilation of the train step (tens of seconds here), so the
    ETA is estimated from the steps after the first progress line; until then it reads "?".
    """

    def __init__(self, first_step: int, num_steps: int) -> None:
        self.num_steps = num_steps
        self._last_step = first_step
        self._last_time = time.perf_counter()
        self._steady: tuple[int, float] | None = None  # (step, time) of the first line

    def line(self, step: int, loss: float) -> tuple[str, float]:
        """('step 40/600 | loss 0.1234 | 3.10 steps/s | ETA 3m01s', steps_per_second)."""
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        eta = math.inf
        if self._steady is None:
            self._steady = (step, now)
        elif step > self._steady[0]:
            steady_rate = (step - self._steady[0]) / max(now - self._steady[1], 1e-9)
            eta = (self.num_steps - step) / steady_rate
        text = (f"step {step}/{self.num_steps} | loss {loss:.4f} | {rate:.2f} steps/s"
                f" | ETA {format_duration(eta)}")
        return text, rate
