"""What a run shows while it trains: a progress bar of submission time against the budget
with the latest metric against its target, or plain lines when quiet or not on a terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm

from harness.core.spec import EvalResults, Workload


class Progress:
    def __init__(self, workload: Workload, budget_sec: float, label: str, quiet: bool):
        self.metric = f"validation/{workload.target_metric_name}"
        self.target = workload.validation_target_value
        self.label = label
        self.plain = quiet or not sys.stderr.isatty()
        self.bar = None if self.plain else tqdm(total=round(budget_sec, 1), desc=label, unit="s", bar_format="{desc} |{bar}| {n:.1f}/{total:.0f} s submission time {postfix}", leave=True)

    def on_eval(self, row: EvalResults) -> None:
        value = row.get(self.metric, float("nan"))
        text = f"step {row['global_step']}  {self.metric} {value:.4f} (target {self.target:g})"
        if self.bar is None:
            print(f"{self.label}: {row['accumulated_submission_time']:.1f} s  {text}", file=sys.stderr, flush=True)
        else:
            self.bar.n = min(round(row["accumulated_submission_time"], 1), self.bar.total)
            self.bar.set_postfix_str(text)

    def warn(self, text: str) -> None:
        """A warning line on stderr, above the bar when there is one (shown even when quiet)."""
        line = f"pacer: warning: {text}"
        if self.bar is None:
            print(line, file=sys.stderr, flush=True)
        else:
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
