"""Training metrics: a CSV file (always), TensorBoard (when installed), a PNG plot at the end.

metrics.csv has one row per logged training step and one per evaluation; columns that do
not apply to a row are left empty. On --resume, rows past the resumed step (written by the
interrupted run after its last checkpoint) are dropped so that the file tells one story.
"""

import csv
from pathlib import Path

COLUMNS = ("step", "epoch", "elapsed_s", "lr", "loss", "loss_class", "loss_bbox", "loss_giou", "images_per_s",
           "AP", "AP50", "AP75")


class MetricsLog:
    def __init__(self, run_dir, resume_step=None):
        self.path = Path(run_dir) / "metrics.csv"
        rows = self.read(self.path) if resume_step is not None and self.path.is_file() else []
        rows = [row for row in rows if int(row["step"]) <= (resume_step or 0)]
        with open(self.path, "w", newline="") as file:
            writer = csv.DictWriter(file, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.tensorboard = _tensorboard_writer(run_dir)

    @staticmethod
    def read(path):
        with open(path, newline="") as file:
            return list(csv.DictReader(file))

    def write(self, **values):
        row = {key: ("" if values.get(key) is None else values[key]) for key in COLUMNS}
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, COLUMNS).writerow(row)
        if self.tensorboard is not None:
            for key, value in values.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, values["step"])
            self.tensorboard.flush()

    def plot(self, out_path):
        """Loss and mAP against the step: a PNG at ``out_path``."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot

        rows = self.read(self.path)
        train = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
        evals = [(int(r["step"]), float(r["AP"]), float(r["AP50"])) for r in rows if r["AP"]]
        figure, (loss_axis, ap_axis) = pyplot.subplots(1, 2, figsize=(11, 4))
        if train:
            loss_axis.plot(*zip(*train), color="tab:blue")
        loss_axis.set(xlabel="step", ylabel="training loss", title="loss", yscale="log")
        if evals:
            steps, ap, ap50 = zip(*evals)
            ap_axis.plot(steps, ap, "o-", label="AP 0.50:0.95")
            ap_axis.plot(steps, ap50, "s-", label="AP50")
            ap_axis.legend()
        ap_axis.set(xlabel="step", ylabel="held-out mAP", title="mAP", ylim=(0, 1))
        figure.tight_layout()
        figure.savefig(out_path, dpi=100)
        pyplot.close(figure)

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(run_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(Path(run_dir) / "tensorboard"))
