"""On-site recalibration of a v3 focus model: frozen features, refitted output layer (numpy/scipy).

A v3 graph ends in one linear layer per patch (`head_out`, 4 rows: score logit,
log-distance mean, its log-variance, specimen logit) on the last hidden layer,
which the graph also outputs (`hidden`). Recalibration keeps everything up to
that layer frozen and refits rows of `head_out` on a user's labelled z-stacks:

* the score row, always: RankNet over plane pairs (the plane nearer the label
  must score higher, pairs closer than half the tolerance left out) plus a
  softmax term that puts the labelled plane on top, plus an L2 pull towards the
  stock weights (strength `l2`, so a few stacks cannot drag the model far);
* the distance rows, only when the depth of field is known (`dof_um`, or per
  stack from the optics its manifest records): Gaussian NLL of
  log(|dz|/DOF + offset), as in training;
* the side-of-focus pair head's output weights (`fit_pair_head`), with a DOF:
  logistic loss on frame pairs 0.3–`max_gap_dof` DOF apart on one side of the
  label (which of the two is closer to focus), L2-pulled to the stock weights;
  its inputs use the refitted distance rows' log-distance, as served.

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
    dof_um: float | None = None
    features: np.ndarray | None = None
    spectra: np.ndarray | None = None


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
    """Refit the score row (and, with a DOF, the distance rows) on `stacks`; see module doc.

    `dof_um` (µm) applies to every stack; None uses each stack's own `dof_um`
    (stacks without one are left out of the distance fit; none with one: the
    distance rows stay the stock ones).

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
    with_dof = [(s, dof_um if dof_um is not None else s.dof_um) for s in stacks]
    with_dof = [(s, d) for s, d in with_dof if d is not None]
    if with_dof:
        weight[1:3], bias[1:3] = _fit_distance_rows(with_dof, OutputLayer(weight, bias),
                                                    dist_offset, l2, max_iter)
    return OutputLayer(weight, bias)


def _fit_distance_rows(stacks: Sequence[tuple[CalStack, float]], layer: OutputLayer,
                       dist_offset: float, l2: float, max_iter: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Refit rows m, lv by Gaussian NLL with the (already refitted) score row's pooling;
    `stacks` pairs each stack with its DOF (µm)."""
    h_dim = layer.weight.shape[1]
    pooled, targets = [], []
    for s, dof_um in stacks:
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


def frame_log_distance(stack: CalStack, layer: OutputLayer) -> np.ndarray:
    """Pooled log-distance m (n_planes,) of a stack under `layer` (the graph's `log_distance`)."""
    return np.array([frame_outputs(h, layer)[1] for h in stack.hidden])


def distance_error_dof(stack: CalStack, layer: OutputLayer, dof_um: float,
                       dist_offset: float = 0.3) -> float:
    """Median |predicted − true| distance to focus over a stack's planes, in DOF units."""
    m = frame_log_distance(stack, layer)
    predicted = np.maximum(np.exp(m) - dist_offset, 0.0)
    true = np.abs(stack.z_um - stack.best_z_um) / dof_um
    return float(np.median(np.abs(predicted - true)))


def stack_pairs(stack: CalStack, layer: OutputLayer, head: object, dof_um: float
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Pair-head inputs and truths of one labelled stack: (x (p, kx), c (p, kc) or None, y (p,)).

    Pairs are planes a < b (z order) 0.3–`head.max_gap_dof` DOF apart, both on one
    side of the label and farther than its tolerance from it (the head answers "is b
    closer than a?" for frames on one side); y = 1 when b is closer. Needs the stack's
    `features` and, for heads of version ≥ 2, `spectra`. Empty arrays when none.
    """
    from autofocus.scoring.defocus import FRAME_BANDS, FRAME_CONTRAST, pair_context_features

    if stack.features is None or (head.needs_spectra and stack.spectra is None):  # type: ignore[attr-defined]
        raise ValueError(f"stack {stack.name}: pair features need the graph features")
    m = frame_log_distance(stack, layer)
    f = stack.features
    spec = stack.spectra
    rel = stack.z_um - stack.best_z_um
    xs, cs, ys = [], [], []
    for i in range(rel.size):
        for j in range(i + 1, rel.size):
            gap = abs(rel[j] - rel[i]) / dof_um
            same_side = rel[i] * rel[j] > 0
            clear = min(abs(rel[i]), abs(rel[j])) > stack.tolerance_um
            if not (0.3 <= gap <= head.max_gap_dof and same_side and clear):  # type: ignore[attr-defined]
                continue
            args = (f[i][FRAME_BANDS], float(f[i][FRAME_CONTRAST]), float(m[i]),
                    f[j][FRAME_BANDS], float(f[j][FRAME_CONTRAST]), float(m[j]))

            sa = spec[i] if spec is not None else None
            sb = spec[j] if spec is not None else None
            xs.append(head.pair_features(*args, sa, sb))  # type: ignore[attr-defined]
            if head.version >= 3:  # type: ignore[attr-defined]
                cs.append(pair_context_features(*args, sa, sb))  # type: ignore[arg-type]
            ys.append(1.0 if abs(rel[j]) < abs(rel[i]) else 0.0)
    if not xs:
        return np.zeros((0, 0)), None, np.zeros(0)
    return np.asarray(xs), (np.asarray(cs) if cs else None), np.asarray(ys)


def _pair_design(head: object, x: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    """The matrix whose product with the head's output `weights` gives the log-odds."""
    xs = np.atleast_2d(x) / head.scale  # type: ignore[attr-defined]
    if head.version < 3:  # type: ignore[attr-defined]
        return xs
    cs = (np.atleast_2d(c) - head.context_mean) / head.context_scale  # type: ignore[attr-defined]
    w, b = head.hidden_weights, head.hidden_bias  # type: ignore[attr-defined]
    n_x = xs.shape[1]
    ctx = cs @ w[:, n_x:].T + b
    lin = xs @ w[:, :n_x].T
    return np.tanh(ctx + lin) - np.tanh(ctx - lin)


def side_accuracy(head: object, x: np.ndarray, c: np.ndarray | None, y: np.ndarray
                  ) -> float | None:
    """Share of pairs whose order the head gets right (None without pairs)."""
    if y.size == 0:
        return None
    lo = _pair_design(head, x, c) @ head.weights  # type: ignore[attr-defined]
    return float(np.mean((lo > 0) == (y > 0.5)))


def fit_pair_head(head: object, x: np.ndarray, c: np.ndarray | None, y: np.ndarray, *,
                  l2: float = 1.0, max_iter: int = 200) -> object:
    """The pair head with its output `weights` refitted (logistic loss, L2 to the stock).

    Everything before the output weights (scales, the version-3 hidden layer) stays
    frozen, so the head stays antisymmetric. Returns `head` itself when there are no
    pairs or all pairs agree in y (nothing to learn an order from).
    """
    import dataclasses

    if y.size == 0 or np.all(y == y[0]):
        return head
    d = _pair_design(head, x, c)
    w0 = np.asarray(head.weights, np.float64)  # type: ignore[attr-defined]
    sign = 2.0 * y - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (d @ w)
        val = float(np.mean(np.logaddexp(0.0, -margin)))
        g = -(sign / (1.0 + np.exp(margin))) @ d / y.size
        diff = w - w0
        return val + l2 * float(diff @ diff) / w0.size, g + 2 * l2 * diff / w0.size

    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return dataclasses.replace(head, weights=res.x)  # type: ignore[type-var]


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


__all__ = ["CalStack", "OutputLayer", "distance_error_dof", "fit_output_layer",
           "fit_pair_head", "frame_log_distance", "frame_outputs", "patch_hidden",
           "read_output_layer", "side_accuracy", "stack_logits", "stack_pairs",
           "write_calibrated_model"]
