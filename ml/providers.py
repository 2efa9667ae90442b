"""Inference providers behind one interface, each emulating its hardware honestly.

Every provider computes the same spiking network but in its accelerator's number format
and batch shape, and reports a modeled device latency (fixed overhead + per-row cost per
device batch). Numeric formats:
- cpu          float32 reference
- groq         int8 symmetric (per-tensor) weights and activations, int32 accumulate; 64-row batches
- inferentia2  bfloat16 storage, float32 accumulate
- inferentia3  bfloat16 storage, float32 accumulate, larger batches and lower overhead
- ampere       float16 storage, float32 accumulate
- tenstorrent  block floating point (bfp8: 16 values share an exponent, 7-bit mantissas); 32-row tiles
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ml import kernels
from ml.features import CANDIDATE_COLUMNS
from ml.model import CTR_MAX, SpikingNet, outputs

# ml.model.outputs()'s shift-and-scale of the ctr and bid rows, for the compiled kernel's (3, rows) output.
_OUTPUT_SCALE = np.array([[CTR_MAX / 2], [0.5]], dtype=np.float32)


def to_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest even), returned as float32."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def to_fp16(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float16).astype(np.float32)


def to_bfp8(a: np.ndarray, block: int = 16) -> np.ndarray:
    """Block floating point along the last axis: a shared exponent per `block` values."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    n = a.shape[-1]
    pad = (-n) % block
    padded = np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)])
    blocks = padded.reshape(*padded.shape[:-1], -1, block)
    maxabs = np.max(np.abs(blocks), axis=-1, keepdims=True)
    exponent = np.ceil(np.log2(np.where(maxabs > 0, maxabs, 1.0)))
    scale = np.exp2(exponent) / 128.0
    mant = np.clip(np.round(blocks / scale), -127, 127)
    return (mant * scale).reshape(padded.shape)[..., :n]


@functools.lru_cache(maxsize=1024)
def _owners(calls: int, rows: int) -> np.ndarray:
    """The call each row belongs to, for `calls` calls of `rows` rows each (read-only, shared)."""
    owner = np.repeat(np.arange(calls), rows)
    owner.flags.writeable = False
    return owner


def _int8(a: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.max(np.abs(a))) / 127.0 or 1.0
    return np.clip(np.round(a / scale), -127, 127).astype(np.int8), scale


@dataclass
class ProviderStats:
    calls: int = 0
    rows: int = 0
    device_batches: int = 0
    modeled_us: float = 0.0


@dataclass
class Provider:
    name: str
    precision: str
    max_batch: int            # rows per device batch
    overhead_us: float        # modeled fixed cost per device batch
    per_row_us: float         # modeled cost per row
    tolerance: float          # mean |output - cpu output| this format is expected to stay within
    stats: ProviderStats = field(default_factory=ProviderStats)
    _prepared: tuple | None = field(default=None, repr=False)
    _compiled: tuple | None = field(default=None, repr=False)

    def _weights(self, net: SpikingNet) -> tuple:
        """(W1, W2, W1's candidate-column rows) in this provider's format, prepared once per model."""
        if self._prepared is None or self._prepared[0] is not net:
            w1, w2 = self.prepare(net)
            self._prepared = (net, w1, w2, self.rows(w1, CANDIDATE_COLUMNS))
        return self._prepared[1:]

    def prepare(self, net: SpikingNet) -> tuple:
        return net.w1, net.w2

    def hidden(self, x: np.ndarray, w1) -> np.ndarray:
        return x @ w1

    def rows(self, w1, index: list[int]):
        """The prepared first-layer weights of some input features only."""
        return w1[index]

    def run(self, net: SpikingNet, x: np.ndarray) -> np.ndarray:
        """Forward pass in this provider's format: (n, DIM) -> (n, 3) pre-tanh outputs."""
        w1, w2, _ = self._weights(net)
        return self._layers(net, w2, len(x), lambda s: self.hidden(x[s], w1) + net.b1)

    def run_factored(self, net: SpikingNet, users: np.ndarray, owner: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """run() on candidate rows given as their request's user row plus the candidate columns.

        Row i is users[owner[i]] with features.CANDIDATE_COLUMNS set to cand[i]. Since
        x·W1 is linear, its first layer is users·W1 once per request plus cand·W1[those
        columns] per candidate: the same result as run() on the full rows (the whole
        request shares everything else), for a fraction of the multiply-adds.
        """
        w1, w2, w_cand = self._weights(net)
        per_user = self.hidden(users, w1) + net.b1  # the bias once per request, not once per candidate
        return self._layers(net, w2, len(cand), lambda s: per_user[owner[s]] + self.hidden(cand[s], w_cand))

    def score(self, net: SpikingNet, users: np.ndarray, cands: list[np.ndarray]) -> tuple[np.ndarray, ...]:
        """(score, ctr, bid factor) for a batch: request k is users[k] (DIM,) with each row of cands[k]
        as its candidate columns; every request's rows in order, each output one contiguous array."""
        sizes = [len(c) for c in cands]
        owner = _owners(len(cands), sizes[0]) if sizes.count(sizes[0]) == len(sizes) else \
            np.repeat(np.arange(len(cands)), sizes)
        cand = cands[0] if len(cands) == 1 else np.concatenate(cands)
        return tuple(np.ascontiguousarray(o) for o in outputs(self.run_factored(net, users, owner, cand)))

    def _layers(self, net: SpikingNet, w2, n: int, first_layer) -> np.ndarray:
        """Threshold and second layer over device batches of at most max_batch rows; first_layer(rows)
        gives those rows' x·W1 + b1."""
        self.stats.calls += 1
        self.stats.rows += n
        if n <= self.max_batch:  # one device batch: no output buffer to fill
            self.stats.device_batches += 1
            self.stats.modeled_us += self.overhead_us + self.per_row_us * n
            return (first_layer(slice(0, n)) > net.theta).astype(np.float32) @ w2 + net.b2
        out = np.empty((n, 3), dtype=np.float32)
        for start in range(0, n, self.max_batch):
            s = slice(start, min(n, start + self.max_batch))
            out[s] = (first_layer(s) > net.theta).astype(np.float32) @ w2 + net.b2
            self.stats.device_batches += 1
            self.stats.modeled_us += self.overhead_us + self.per_row_us * (s.stop - s.start)
        return out

    def modeled_latency_us(self, rows: int) -> float:
        batches = max(1, -(-rows // self.max_batch))
        return batches * self.overhead_us + rows * self.per_row_us


class Fp32Provider(Provider):
    """The CPU reference, scoring batches with the compiled kernel (ml.kernels); run() and
    run_factored() stay numpy, as the reference the kernel is tested against."""

    def score(self, net, users, cands):
        if self._compiled is None or self._compiled[0] is not net:
            _, w2, w_cand = self._weights(net)
            self._compiled = (net, np.ascontiguousarray(w2.T), np.ascontiguousarray(w_cand), np.float32(net.theta))
        _, w2t, w_cand, theta = self._compiled
        out = kernels.spiking_outputs(users, cands, net.w1, net.b1, w_cand, theta, w2t, net.b2, _OUTPUT_SCALE)
        rows = out.shape[1]
        stats = self.stats
        stats.calls += 1
        stats.rows += rows
        stats.device_batches += -(-rows // self.max_batch)
        stats.modeled_us += self.modeled_latency_us(rows)
        return out[0], out[1], out[2]


class Bf16Provider(Provider):
    def prepare(self, net):
        return to_bf16(net.w1), to_bf16(net.w2)

    def hidden(self, x, w1):
        return to_bf16(x) @ w1


class Fp16Provider(Provider):
    def prepare(self, net):
        return to_fp16(net.w1), to_fp16(net.w2)

    def hidden(self, x, w1):
        return to_fp16(x) @ w1


class Int8Provider(Provider):
    def prepare(self, net):
        q, scale = _int8(net.w1)
        q2, scale2 = _int8(net.w2)
        return (q.astype(np.float32), scale), q2.astype(np.float32) * scale2

    def rows(self, w1, index):
        qw, w_scale = w1
        return qw[index], w_scale

    def hidden(self, x, w1):
        qw, w_scale = w1
        qx, x_scale = _int8(x)
        # int8 x int8 products accumulate exactly in float32 here (|sum| < 2^24), as in int32.
        return (qx.astype(np.float32) @ qw) * (x_scale * w_scale)


class BlockFloatProvider(Provider):
    def prepare(self, net):
        return to_bfp8(net.w1.T).T.copy(), to_bfp8(net.w2.T).T.copy()

    def hidden(self, x, w1):
        return to_bfp8(x) @ w1


def build_providers() -> dict[str, Provider]:
    """Every provider Contrail knows, by config name."""
    return {p.name: p for p in (
        Fp32Provider("cpu", "fp32", 4096, overhead_us=5.0, per_row_us=0.6, tolerance=1e-6),
        Int8Provider("groq", "int8", 64, overhead_us=2.0, per_row_us=0.02, tolerance=0.08),
        Bf16Provider("inferentia2", "bf16", 256, overhead_us=25.0, per_row_us=0.05, tolerance=0.04),
        Bf16Provider("inferentia3", "bf16", 1024, overhead_us=15.0, per_row_us=0.03, tolerance=0.04),
        Fp16Provider("ampere", "fp16", 512, overhead_us=8.0, per_row_us=0.3, tolerance=0.02),
        BlockFloatProvider("tenstorrent", "bfp8", 32, overhead_us=4.0, per_row_us=0.04, tolerance=0.06),
    )}
