"""Metric logs: a CSV file per stream in the run directory, and TensorBoard when installed."""

import csv
import os


class CsvLog:
    """Append rows of scalars to a CSV file; the header grows when new keys appear.

    On resume, :meth:`truncate_after` drops the rows a killed run wrote after its last
    checkpoint, so the file reads as if the run had never stopped.
    """

    def __init__(self, path):
        self.path = path
        self.fields = []
        if os.path.exists(path):
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f), [])

    def _rows(self):
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows):
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row):
        new = [k for k in row if k not in self.fields]
        if new:
            rows = self._rows()
            self.fields = self.fields + new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)

    def truncate_after(self, step):
        rows = [r for r in self._rows() if int(float(r["step"])) <= step]
        if self.fields:
            self._rewrite(rows)


class MetricsLogger:
    """Routes scalar rows to ``<out_dir>/<stream>.csv`` and, if available, TensorBoard."""

    def __init__(self, out_dir, tensorboard=True):
        self.out_dir = out_dir
        self.logs = {}
        self.tb = None
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        if out_dir is not None and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(os.path.join(out_dir, "tensorboard"))

    def _log(self, stream):
        if stream not in self.logs:
            self.logs[stream] = CsvLog(os.path.join(self.out_dir, f"{stream}.csv"))
        return self.logs[stream]

    def write(self, stream, row):
        if self.out_dir is None:
            return
        self._log(stream).write(row)
        if self.tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{stream}/{key}", value, row["step"])

    def truncate_after(self, step, streams=("metrics", "eval")):
        if self.out_dir is None:
            return
        for stream in streams:
            if os.path.exists(os.path.join(self.out_dir, f"{stream}.csv")):
                self._log(stream).truncate_after(step)

    def close(self):
        if self.tb is not None:
            self.tb.close()
