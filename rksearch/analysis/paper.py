"""The paper's own CIFAR-10 results (Tables 1-2), for overlaying on a search's front.

These are FULL-training numbers (hundreds of epochs) while a study's accuracies come from a
short proxy, so a plot must label them as such; they show where the real trade-off lies, not
what the proxy should reach. ``augment`` tells C10+ (standard augmentation) from C10 (none).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperPoint:
    model: str
    table: int
    gflops: float
    mparams: float
    error: float  # CIFAR-10 test error, %
    augment: bool

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error / 100.0

    @property
    def family(self) -> str:
        return self.model.split("-")[0].split(" ")[0]

    @property
    def label(self) -> str:
        return f"{self.model}: {self.error:.2f} % error on C10{'+' if self.augment else ''} (paper, Table {self.table})"


def _rows(table: int, augment: bool, rows: list[tuple[str, float, float, float]]) -> list[PaperPoint]:
    return [PaperPoint(m, table, g, p, e, augment) for m, g, p, e in rows]


PAPER_POINTS: tuple[PaperPoint, ...] = tuple(
    _rows(1, False, [  # k = 36, m = 1, multiscale, no augmentation
        ("ERKNet-6x1_6x1_6x1 k=36", 0.66, 0.74, 7.08), ("ERKNet-7x1_6x1_6x1 k=36", 0.83, 0.83, 7.02),
        ("ERKNet-7x1_7x1_6x1 k=36", 0.87, 0.91, 6.67), ("ERKNet-7x1_7x1_7x1 k=36", 0.88, 0.99, 6.61),
        ("IRKNet-3x1_3x1_3x1 k=36", 0.38, 0.32, 7.18), ("IRKNet-4x1_3x1_3x1 k=36", 0.62, 0.40, 6.89),
        ("IRKNet-4x1_4x1_3x1 k=36", 0.68, 0.49, 6.63), ("IRKNet-4x1_4x1_4x1 k=36", 0.69, 0.57, 6.50),
    ])
    + _rows(2, False, [
        ("DenseNet (27.2 M)", 14.53, 27.2, 5.83), ("DenseNet (15.3 M)", 10.83, 15.3, 5.19),
        ("CliqueNet (10.14 M)", 9.45, 10.14, 5.06), ("CliqueNet (10.48 M)", 10.56, 10.48, 5.06),
        ("IRKNet-5x1_5x1_5x1-AB k=80", 2.17, 1.40, 5.27), ("IRKNet-5x1_5x1_5x1-AB k=150", 7.62, 4.87, 4.60),
        ("IRKNet-5x1_5x1_5x1-AB k=180", 10.98, 6.99, 4.56),
    ])
    + _rows(2, True, [
        ("DenseNet (27.2 M)", 14.53, 27.2, 3.74), ("DenseNet (15.3 M)", 10.83, 15.3, 3.62),
        ("DenseNet (25.6 M)", 18.59, 25.6, 3.46),
        ("IRKNet-5x1_5x1_5x1-AB k=80", 2.17, 1.40, 4.23), ("IRKNet-5x1_5x1_5x1-AB k=150", 7.62, 4.87, 3.60),
        ("IRKNet-5x1_5x1_5x1-AB k=200", 13.55, 8.63, 3.54), ("IRKNet-5x1_5x1_5x1-AB k=240", 19.51, 12.41, 3.40),
    ])
)
