"""The focusnet-v4 ONNX graph: `features.py`'s channels, then a linear head.

Input `image` (N, 1, H, W) float32, H and W whole 64-px patches. Outputs:
`score` (N,) the head's log-odds (unbounded, higher = sharper; see train.py),
`logit` the same value (older tools ask for it), `features` (N, C) the channels.
Two scales at a time come from one stride-4 4×4 convolution (a two-level Haar
packet bank: block mean + the coarser scale's details + the finer scale's details on
the diagonal 2×2 sub-blocks), so the full-resolution frame is read
once and the next pass works on 1/16 of it; patch pooling is a stride-p
convolution; the rest works on a few numbers per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from autofocus_models.pipeline.v4.features import (
    DIAGONAL_SUBBLOCKS,
    EPS,
    LEVELS,
    NAMES,
    PATCH_PX,
    TOP_POWER,
)

if TYPE_CHECKING:
    import onnx

INPUT_NAME = "image"
OPSET = 18
IR_VERSION = 10


def haar1() -> np.ndarray:
    """(4, 1, 2, 2): the 2×2 block mean and the three orthonormal Haar details."""
    signs = np.array([[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]],
                      [[1, -1], [-1, 1]]], np.float32)
    bank = signs * np.float32(0.5)
    bank[0] *= 0.5
    return bank[:, None]


def haar1_sum() -> np.ndarray:
    """(1, 4, 1, 1): squared channels of `haar1` → block variance (h² + v² + d²) / 4."""
    return np.array([0.0, 0.25, 0.25, 0.25], np.float32).reshape(1, 4, 1, 1)


def haar2() -> np.ndarray:
    """(10, 1, 4, 4): two Haar levels of a 4×4 block in one bank.

    Channel 0 the block mean; 1-3 the details of the four 2×2 means (scale k+1,
    each the `haar1` detail of the 2×2-mean image); 4-9 the details within the
    two diagonal 2×2 sub-blocks (top-left, bottom-right: scale k, sampled on a
    checkerboard of 2×2 blocks — unbiased for the band energy of any texture
    that is not locked to a 4-px grid, at 10 channels instead of 16).
    """
    h1 = haar1()[:, 0]
    bank = np.zeros((10, 4, 4), np.float32)
    bank[0] = 1.0 / 16
    for i in range(1, 4):
        bank[i] = np.kron(h1[i], np.full((2, 2), 0.25, np.float32))
    j = 4
    for b in DIAGONAL_SUBBLOCKS:
        for i in range(1, 4):
            bank[j, 2 * b: 2 * b + 2, 2 * b: 2 * b + 2] = h1[i]
            j += 1
    return bank[:, None]


def haar2_sum() -> np.ndarray:
    """(2, 10, 1, 1): squared `haar2` channels → [scale k, scale k+1] block variance,
    the scale-k one averaged over the two diagonal 2×2 sub-blocks."""
    w = np.zeros((2, 10), np.float32)
    w[0, 4:] = 0.25 / 2
    w[1, 1:4] = 0.25
    return w.reshape(2, 10, 1, 1)


def build(weights: Sequence[float], bias: float, *, name: str = "focusnet-v4") -> onnx.ModelProto:
    """The graph with the linear head `score = features · weights + bias` (needs `onnx`,
    the `train` extra; the banks above need numpy only)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.asarray(weights, dtype=np.float32).reshape(len(NAMES), 1)
    if w.shape[0] != len(NAMES):
        raise ValueError(f"expected {len(NAMES)} weights, got {w.shape[0]}")
    nodes: list[onnx.NodeProto] = []
    inits = [
        numpy_helper.from_array(np.array(EPS, np.float32), "eps"),
        numpy_helper.from_array(np.array(TOP_POWER, np.float32), "power"),
        numpy_helper.from_array(np.array(1.0 / TOP_POWER, np.float32), "inv_power"),
        numpy_helper.from_array(w, "head_w"),
        numpy_helper.from_array(np.array([bias], np.float32), "head_b"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "col_shape"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes3"),
    ]

    def node(op: str, inputs: list[str], out: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    inits += [numpy_helper.from_array(haar2(), "bank2"),
              numpy_helper.from_array(haar2_sum(), "bank2_sum"),
              numpy_helper.from_array(haar1(), "bank1"),
              numpy_helper.from_array(haar1_sum(), "bank1_sum"),
              numpy_helper.from_array(np.array([0], np.int64), "c0"),
              numpy_helper.from_array(np.array([1], np.int64), "c1"),
              numpy_helper.from_array(np.array([1], np.int64), "ch_axis"),
              numpy_helper.from_array(np.array([2, 3], np.int64), "axes_hw"),
              numpy_helper.from_array(np.array([-1, LEVELS], np.int64), "row_shape")]
    x = INPUT_NAME
    pes = []
    k = 0
    while k < LEVELS:
        two = k + 1 < LEVELS  # two scales from one 4×4 stride-4 Haar-packet convolution
        bank, sums, step = ("bank2", "bank2_sum", 4) if two else ("bank1", "bank1_sum", 2)
        # One pass over x_k per call: block mean + every detail, squared, summed per scale.
        c = node("Conv", [x, bank], f"haar{k}", strides=[step, step])
        sq = node("Mul", [c, c], f"sq{k}")
        d = node("Conv", [sq, sums], f"d{k}")  # (N, 1 or 2, ...): block variance per scale
        p = (PATCH_PX >> k) // step  # one patch in units of this grid
        if p > 1:
            ch = 2 if two else 1
            inits.append(numpy_helper.from_array(
                np.full((ch, 1, p, p), 1.0 / (p * p), np.float32), f"pool{k}"))
            d = node("Conv", [d, f"pool{k}"], f"pe{k}", strides=[p, p], group=ch)
        pes.append(d)
        x = node("Slice", [c, "c0", "c1", "ch_axis"], f"x{k + (2 if two else 1)}")
        k += 2 if two else 1
    pe = node("Concat", pes, "pe", axis=1)  # (N, LEVELS, H/64, W/64) patch energies
    m = node("ReduceMean", [pe, "axes_hw"], "pm", keepdims=1)
    mean = node("Log", [node("Add", [m, "eps"], "pme")], "mean")
    # power-4 mean over patches, in logs: (logsumexp(4 log P) - log n) / 4
    lp = node("Mul", [node("Log", [node("Add", [pe, "eps"], "pee")], "lpe"), "power"], "lp")
    lse = node("ReduceLogSumExp", [lp, "axes_hw"], "lse", keepdims=1)
    logn = node("ReduceLogSumExp", [node("Sub", [lp, lp], "zeros"), "axes_hw"], "logn",
                keepdims=1)
    top = node("Mul", [node("Sub", [lse, logn], "lsen"), "inv_power"], "top")
    # the level from the last block means (x_last is (N,1,H/2^L,W/2^L): a mean of means, exact)
    lvl = node("ReduceMean", [x, "axes3"], "lvl", keepdims=1)
    level = node("Log", [node("Add", [lvl, "eps"], "lvle")], "level")
    cols = [node("Reshape", [mean, "row_shape"], "mean_row"),
            node("Reshape", [top, "row_shape"], "top_row"),
            node("Reshape", [level, "col_shape"], "level_row")]
    feats = node("Concat", cols, "features", axis=1)
    lin = node("MatMul", [feats, "head_w"], "lin")
    logit2 = node("Add", [lin, "head_b"], "logit2")
    nodes.append(helper.make_node("Reshape", [logit2, "flat_shape"], ["logit"], name="logit"))
    nodes.append(helper.make_node("Identity", ["logit"], ["score"], name="score"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(NAMES)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autofocus_models.pipeline.v4")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


__all__ = ["INPUT_NAME", "IR_VERSION", "OPSET", "build"]
