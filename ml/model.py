"""The bid scoring model: a 2-layer spiking network, weights from a versioned .npz file.

input·W1 + b1 → threshold activation (spike where > theta) → ·W2 + b2 → tanh
Outputs per row: score (-1..1), predicted CTR and a recommended-bid factor (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.features import DIM

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "default-v1.npz"
HIDDEN = 64
CTR_MAX = 0.05


@dataclass(frozen=True)
class SpikingNet:
    version: str
    w1: np.ndarray  # (DIM, HIDDEN) float32
    b1: np.ndarray  # (HIDDEN,)
    w2: np.ndarray  # (HIDDEN, 3)
    b2: np.ndarray  # (3,)
    theta: float

    @classmethod
    def load(cls, path: str | Path) -> SpikingNet:
        """Load and check a model file; raises ValueError when it does not fit the layout."""
        try:
            with np.load(path, allow_pickle=False) as data:
                net = cls(str(data["version"]), data["w1"].astype(np.float32), data["b1"].astype(np.float32),
                          data["w2"].astype(np.float32), data["b2"].astype(np.float32), float(data["theta"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"cannot load model {path}: {exc}") from None
        if net.w1.shape[0] != DIM or net.w1.shape[1] != net.b1.shape[0] or net.w2.shape != (net.w1.shape[1], 3) \
                or net.b2.shape != (3,):
            raise ValueError(f"model {path} has shapes that do not fit the {DIM}-feature layout")
        return net

    def save(self, path: str | Path) -> None:
        np.savez(path, version=np.array(self.version), w1=self.w1, b1=self.b1, w2=self.w2, b2=self.b2,
                 theta=np.array(self.theta))


def make_default(version: str = "default-v1", seed: int = 20261124) -> SpikingNet:
    """The shipped starting model: deterministic weights that favour interested, engaged users."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.25, (DIM, HIDDEN)).astype(np.float32)
    w1[140:] = 0.0  # reserved features carry no weight
    b1 = rng.normal(0, 0.1, HIDDEN).astype(np.float32)
    w2 = rng.normal(0, 0.3, (HIDDEN, 3)).astype(np.float32)
    b2 = np.array([0.0, -1.0, 0.0], dtype=np.float32)
    return SpikingNet(version, w1, b1, w2, b2, theta=0.2)


def outputs(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn the (n, 3) pre-activation into (score, ctr, bid factor)."""
    t = np.tanh(z)
    return t[:, 0], (t[:, 1] + 1.0) * (CTR_MAX / 2), (t[:, 2] + 1.0) * 0.5


def forward(net: SpikingNet, x: np.ndarray) -> np.ndarray:
    """Reference float32 forward pass: (n, DIM) -> (n, 3) pre-tanh outputs."""
    spikes = (x @ net.w1 + net.b1 > net.theta).astype(np.float32)
    return spikes @ net.w2 + net.b2


if __name__ == "__main__":
    MODELS_DIR.mkdir(exist_ok=True)
    make_default().save(DEFAULT_MODEL)
    print(DEFAULT_MODEL)
