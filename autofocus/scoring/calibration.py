"""On-site recalibration of a v3 focus model: frozen features, refitted output layer (numpy/scipy).

A v3 graph ends in one linear layer per patch (`head_out`, 4 rows: score logit,
log-distance mean, its log-variance, specimen logit) on the last hidden layer,
which the graph also outputs (`hidden`). Recalibration keeps everything up to
that layer frozen and refits rows of `head_out` on a user's labelled z-stacks:

* the score row, always: RankNet over plane pairs (the plane nearer the label
  must score higher, pairs closer than half the tolerance left out) plus a
  softmax term that puts the labelled plane on top, plus an L2 pull towards the
  stock weights (strength `l2`, so a few stacks cannot drag the model far);
* the distance rows, only when the depth of field is known (`dof_um`):
  Gaussian NLL of log(|dz|/DOF + offset), as in training.

Pooling is the graph's (top-k patches by score logit), recomputed at every
evaluation of the loss, so the fitted weights mean in the graph what they mean
here. No torch and no `onnx` package: the new weights are written into a copy
of the ONNX file by replacing the bytes of the `head_out` initialisers, which
have the same size; the copy is then run once and must agree with the numpy
maths (`parity`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from autofocus.errors import ModelError

TOPK_DIV = 4
"""The v3 graph's pooling divisor for the score (k = max(1, n_patches // TOPK_DIV))."""


@dataclass
class CalStack:
    """One labelled stack as the refit sees it: per-plane patch hidden vectors and labels.

    `hidden[i]` is (n_patches, H) float64 for plane i; `z_um` the plane z
    (µm); `best_z_um` the labelled focus and `tolerance_um` its tolerance.
    """

    name: str
    hidden: list[np.ndarray]
    z_um: np.ndarray
    best_z_um: float
    tolerance_um: float


@dataclass(frozen=True)
class OutputLayer:
    """The `head_out` weights: `weight` (4, H) and `bias` (4,), float64."""

    weight: np.ndarray
    bias: np.ndarray


def patch_hidden(hidden_map: np.ndarray) -> np.ndarray:
    """A graph `hidden` output (H, gh, gw) → (gh·gw, H) float64 patch vectors."""
    h = np.asarray(hidden_map, np.float64)
    return h.reshape(h.shape[0], -1).T.copy()


def _top_patches(patch_logits: np.ndarray) -> np.ndarray:
    """Indices of the patches the graph pools: the top max(1, P // TOPK_DIV) score logits (P,)."""
    k = max(1, patch_logits.size // TOPK_DIV)
    return np.argpartition(-patch_logits, k - 1)[:k]


def frame_outputs(hidden: np.ndarray, layer: OutputLayer) -> np.ndarray:
    """Pooled (logit, m, lv) of one frame from its patch vectors (P, H), as the graph pools."""
    out = hidden @ layer.weight.T + layer.bias           # (P, 4)
    return out[_top_patches(out[:, 0]), :3].mean(axis=0)


def stack_logits(stack: CalStack, layer: OutputLayer) -> np.ndarray:
    """Score logits (n_planes,) of a stack under `layer`."""
    return np.array([frame_outputs(h, layer)[0] for h in stack.hidden])


def _pairs(dist: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    closer, farther = np.nonzero(dist[:, None] + gap < dist[None, :])
    return closer, farther


def fit_output_layer(stacks: Sequence[CalStack], stock: OutputLayer, *,
                     dof_um: float | None = None, l2: float = 1.0,
                     dist_offset: float = 0.3, max_iter: int = 200) -> OutputLayer:
    """Refit the score row (and, with `dof_um`, the distance rows) on `stacks`; see module doc.

    Returns a new `OutputLayer` (the specimen row is the stock one). Raises
    `ValueError` for no stacks.
    """
    if not stacks:
        raise ValueError("no stacks to calibrate on")
    h_dim = stock.weight.shape[1]
    w0 = stock.weight[0].copy()
    b0 = float(stock.bias[0])
    prepared = []
    for s in stacks:
        dist = np.abs(s.z_um - s.best_z_um)
        closer, farther = _pairs(dist, 0.5 * s.tolerance_um)
        prepared.append((s.hidden, closer, farther, int(np.argmin(dist))))

    def score_loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:h_dim], theta[h_dim]
        total, grad = 0.0, np.zeros_like(theta)
        for hidden, closer, farther, top in prepared:
            logits = np.empty(len(hidden))
            dlogit = np.empty((len(hidden), h_dim))
            for i, h in enumerate(hidden):
                s = h @ w + b
                sel = _top_patches(s)
                logits[i] = s[sel].mean()
                dlogit[i] = h[sel].mean(axis=0)
            g_logit = np.zeros(len(hidden))
            if closer.size:
                diff = logits[closer] - logits[farther]
                total += float(np.mean(np.logaddexp(0.0, -diff)))
                coef = -1.0 / (1.0 + np.exp(diff)) / closer.size
                np.add.at(g_logit, closer, coef)
                np.add.at(g_logit, farther, -coef)
            # Softmax cross-entropy: the labelled plane on top.
            z = logits - logits.max()
            p = np.exp(z) / np.exp(z).sum()
            total += float(-math.log(max(p[top], 1e-300)))
            g_soft = p.copy()
            g_soft[top] -= 1.0
            g_logit += g_soft
            grad[:h_dim] += g_logit @ dlogit
            grad[h_dim] += g_logit.sum()
        n = len(prepared)
        total /= n
        grad /= n
        reg = l2 * (np.sum((theta[:h_dim] - w0) ** 2) + (theta[h_dim] - b0) ** 2) / h_dim
        grad[:h_dim] += 2 * l2 * (theta[:h_dim] - w0) / h_dim
        grad[h_dim] += 2 * l2 * (theta[h_dim] - b0) / h_dim
        return total + reg, grad

    res = minimize(score_loss, np.concatenate([w0, [b0]]), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    weight = stock.weight.astype(np.float64).copy()
    bias = stock.bias.astype(np.float64).copy()
    weight[0], bias[0] = res.x[:h_dim], res.x[h_dim]
    if dof_um is not None:
        weight[1:3], bias[1:3] = _fit_distance_rows(stacks, OutputLayer(weight, bias), dof_um,
                                                    dist_offset, l2, max_iter)
    return OutputLayer(weight, bias)


def _fit_distance_rows(stacks: Sequence[CalStack], layer: OutputLayer, dof_um: float,
                       dist_offset: float, l2: float, max_iter: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Refit rows m, lv by Gaussian NLL with the (already refitted) score row's pooling."""
    h_dim = layer.weight.shape[1]
    pooled, targets = [], []
    for s in stacks:
        for h, z in zip(s.hidden, s.z_um, strict=True):
            pooled.append(h[_top_patches(h @ layer.weight[0] + layer.bias[0])].mean(axis=0))
            targets.append(math.log(abs(z - s.best_z_um) / dof_um + dist_offset))
    x = np.asarray(pooled)
    t = np.asarray(targets)
    theta0 = np.concatenate([layer.weight[1], [layer.bias[1]], layer.weight[2], [layer.bias[2]]])

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        wm, bm = theta[:h_dim], theta[h_dim]
        wv, bv = theta[h_dim + 1:2 * h_dim + 1], theta[2 * h_dim + 1]
        m = x @ wm + bm
        lv = np.clip(x @ wv + bv, -8.0, 6.0)
        r2 = (t - m) ** 2 * np.exp(-lv)
        loss = float(np.mean(0.5 * (lv + r2)))
        gm = -(t - m) * np.exp(-lv) / t.size
        gv = 0.5 * (1.0 - r2) / t.size
        grad = np.concatenate([x.T @ gm, [gm.sum()], x.T @ gv, [gv.sum()]])
        d = theta - theta0
        return loss + l2 * float(d @ d) / h_dim, grad + 2 * l2 * d / h_dim

    res = minimize(nll, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    th = res.x
    weight = np.stack([th[:h_dim], th[h_dim + 1:2 * h_dim + 1]])
    return weight, np.array([th[h_dim], th[2 * h_dim + 1]])


def read_output_layer(scorer: object) -> OutputLayer:
    """The stock `head_out` weights of an opened v3 scorer (read from its ONNX initialisers).

    Read from the model file with a minimal protobuf walk (`_initializers`), so
    the `onnx` package is not needed at run time. Raises `ModelError` when the
    file has no `head_out` initialisers.
    """
    path = Path(scorer.model_path)  # type: ignore[attr-defined]
    inits = _initializers(path.read_bytes())
    try:
        w = inits["head_out.weight"]
        b = inits["head_out.bias"]
    except KeyError:
        raise ModelError(f"{path.name} has no head_out initialisers: not a calibratable "
                         "focusnet-v3 model") from None
    weight = np.frombuffer(w[1], np.float32).reshape(w[0][0], w[0][1]).astype(np.float64)
    bias = np.frombuffer(b[1], np.float32).astype(np.float64)
    return OutputLayer(weight, bias)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes, start: int = 0, end: int | None = None):
    """(field number, wire type, value or (offset, length)) of a protobuf message."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield field, wire, (pos, length)
            pos += length
        elif wire == 5:
            yield field, wire, (pos, 4)
            pos += 4
        elif wire == 1:
            yield field, wire, (pos, 8)
            pos += 8
        else:
            raise ModelError(f"unsupported protobuf wire type {wire} in the model file")


def _initializers(buf: bytes) -> dict[str, tuple[list[int], bytes, int]]:
    """Float initialisers stored as raw_data: name → (dims, raw bytes, byte offset in file).

    ModelProto.graph = field 7; GraphProto.initializer = field 5; TensorProto:
    dims = 1 (varint, maybe packed), data_type = 2, name = 8, raw_data = 9.
    """
    out = {}
    for field, wire, val in _fields(buf):
        if field != 7 or wire != 2:
            continue
        g0, glen = val
        for gf, gw, gval in _fields(buf, g0, g0 + glen):
            if gf != 5 or gw != 2:
                continue
            t0, tlen = gval
            dims: list[int] = []
            name, raw, raw_at = "", b"", -1
            for tf, tw, tval in _fields(buf, t0, t0 + tlen):
                if tf == 1 and tw == 0:
                    dims.append(tval)
                elif tf == 1 and tw == 2:
                    p, ln = tval
                    q = p
                    while q < p + ln:
                        d, q = _varint(buf, q)
                        dims.append(d)
                elif tf == 8 and tw == 2:
                    name = buf[tval[0]:tval[0] + tval[1]].decode()
                elif tf == 9 and tw == 2:
                    raw = buf[tval[0]:tval[0] + tval[1]]
                    raw_at = tval[0]
            if name and raw_at >= 0:
                out[name] = (dims, raw, raw_at)
    return out


def write_calibrated_model(stock_path: Path, layer: OutputLayer, out_path: Path) -> None:
    """Copy `stock_path` to `out_path` with `head_out` replaced by `layer` (same shapes).

    Raises `ModelError` when the stock file lacks the initialisers or the shapes differ.
    """
    buf = bytearray(Path(stock_path).read_bytes())
    inits = _initializers(bytes(buf))
    for name, value in (("head_out.weight", layer.weight), ("head_out.bias", layer.bias)):
        if name not in inits:
            raise ModelError(f"{Path(stock_path).name} has no {name} initialiser")
        _, raw, at = inits[name]
        new = np.asarray(value, np.float32).tobytes()
        if len(new) != len(raw):
            raise ModelError(f"{name}: new weights have {len(new)} bytes, the model {len(raw)}")
        buf[at:at + len(raw)] = new
    Path(out_path).write_bytes(bytes(buf))


__all__ = ["CalStack", "OutputLayer", "fit_output_layer", "frame_outputs", "patch_hidden",
           "read_output_layer", "stack_logits", "write_calibrated_model"]
