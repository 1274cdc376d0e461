"""Export focusnet to ONNX, check parity with torch, and write the model card.

The graph is written node by node with `onnx.helper` from the head's weights and
the fixed filters of `autofocus_models.pipeline.spec`: the exact ops, opset (17) and IR
version (9, which onnxruntime ≥ 1.16 reads) are under our control and no
exporter dependency is needed. `parity_check` then compares it with the torch
module on random and real inputs. Building the graph needs only numpy + onnx;
the parity check needs torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from autofocus_models.pipeline import spec
from autofocus_models.pipeline.card import write_card
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9
AXIS_1 = "axis_1"
"""The int64 [1] constant `walsh_front_end` adds (an axis operand for Slice, Gather, ReduceSum)."""


class GraphBuilder:
    """Accumulates nodes and initialisers with unique names (v1/v2 and v3 graphs)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        name = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name


def walsh_front_end(g: GraphBuilder, input_name: str = spec.INPUT_NAME) -> tuple[list[str], str]:
    """The fixed Walsh–Hadamard front end shared by every focusnet version, added to `g`.

    Three levels of the 4×4 Walsh bank with stride 4 on `input_name`; each
    level's squared responses are pooled per 64-px patch and its h+v bands
    summed. Returns (the three levels' band-energy tensors, each (N, 4, gh, gw),
    the patch mean intensity (N, 1, gh, gw)). Adds the constants `walsh_bank`,
    `band_pairing`, `ch_start`, `ch_end` and `AXIS_1` (callers use it too).
    """
    bank = g.const("walsh_bank", spec.walsh_filter_bank())
    pairing = g.const("band_pairing", spec.band_pairing())
    ch0 = (g.const("ch_start", np.array([0], np.int64)), g.const("ch_end", np.array([1], np.int64)))
    axis1 = g.const(AXIS_1, np.array([1], np.int64))
    level_in = input_name
    energies = []
    for level in range(spec.N_LEVELS):
        tag = "ABC"[level]
        c = g.op("Conv", [level_in, bank], f"walsh_{tag}", strides=[spec.LEVEL_STRIDE] * 2,
                 kernel_shape=[4, 4])
        sq = g.op("Mul", [c, c], f"walsh_sq_{tag}")
        pool = spec.level_pool_px(level)
        if pool > 1:
            sq = g.op("AveragePool", [sq], f"pooled_sq_{tag}", kernel_shape=[pool, pool],
                      strides=[pool, pool])
        energies.append(g.op("Conv", [sq, pairing], f"bands_{tag}", kernel_shape=[1, 1]))
        level_in = g.op("Slice", [c, ch0[0], ch0[1], axis1], f"block_mean_{tag}")
    return energies, level_in


def build_onnx(head: Mapping[str, np.ndarray], *, doc: str = "",
               topk_div: int = spec.TOPK_DIV) -> onnx.ModelProto:
    """The focusnet ONNX graph for head weights `head` (see `net.head_weights`).

    Input `image` float32 (N, 1, H, W), N/H/W dynamic, H and W ≥ 64. Outputs
    `score` (N,) = sigmoid(logit), `logit` (N,), `patch_logits` (N, 1, H//64, W//64);
    `logit` is the mean of the top max(1, n_patches // `topk_div`) patch logits.
    Raises `onnx.checker.ValidationError` if the graph is malformed.
    """
    g = GraphBuilder()
    energies, level_in = walsh_front_end(g)
    eps = g.const("log_eps", np.array(spec.LOG_EPS, np.float32))
    bands = g.op("Concat", energies, "bands", axis=1)
    logs = g.op("Log", [g.op("Add", [bands, eps])], "log_bands")
    frame_bands = g.op("Log", [g.op("Add", [
        g.op("ReduceMean", [bands], "frame_bands_lin", axes=[2, 3], keepdims=1), eps])],
        "frame_bands")
    mean_eps = g.const("frame_mean_eps", np.array(spec.FRAME_MEAN_EPS, np.float32))
    frame_mean = g.op("Log", [g.op("Add", [g.op("Relu", [
        g.op("ReduceMean", [level_in], "frame_mean_lin", axes=[2, 3], keepdims=1)]), mean_eps])],
        "frame_mean")
    feats = g.op("Concat", [
        logs, level_in,
        g.op("Expand", [frame_mean, g.op("Shape", [level_in])], "frame_mean_map"),
        g.op("Expand", [frame_bands, g.op("Shape", [logs])], "frame_bands_map"),
    ], "features", axis=1)

    mean = g.const("feature_mean", head["feature_mean"].reshape(1, -1, 1, 1))
    inv_std = g.const("feature_inv_std", (1.0 / head["feature_std"]).reshape(1, -1, 1, 1))
    h = g.op("Mul", [g.op("Sub", [feats, mean]), inv_std], "features_std")
    members = int(head["conv3.weight"].shape[0])
    for i, act in ((1, True), (2, True), (3, False)):
        w = g.const(f"conv{i}.weight", head[f"conv{i}.weight"])
        b = g.const(f"conv{i}.bias", head[f"conv{i}.bias"])
        group = 1 if i == 1 else members
        name = f"hidden{i}_lin" if act else "member_logits"
        h = g.op("Conv", [h, w, b], name, kernel_shape=[1, 1], group=group)
        if act:
            h = g.op("Relu", [h], f"hidden{i}")
    g.op("ReduceMean", [h], "patch_logits", axes=[1], keepdims=1)

    flat = g.op("Flatten", ["patch_logits"], "patch_logits_flat", axis=1)
    n_patches = g.op("Gather", [g.op("Shape", [flat]), AXIS_1], "n_patches", axis=0)
    k = g.op("Max", [g.op("Div", [n_patches, g.const("topk_div", np.array([int(topk_div)],
                                                                          np.int64))]),
                     g.const("one", np.array([1], np.int64))], "k")
    g.nodes.append(helper.make_node("TopK", [flat, k], ["top_logits", "top_idx"], name="topk",
                                    axis=1, largest=1, sorted=0))
    g.op("ReduceMean", ["top_logits"], "logit", axes=[1], keepdims=0)
    g.op("Sigmoid", ["logit"], "score")

    graph = helper.make_graph(
        g.nodes,
        "focusnet",
        [helper.make_tensor_value_info(spec.INPUT_NAME, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("patch_logits", TensorProto.FLOAT,
                                          ["N", 1, "H_patches", "W_patches"]),
        ],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autofocus autofocus_models.pipeline.export",
                              doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def run_onnx(model_path: Path | str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run the ONNX model on CPU with onnxruntime; returns outputs by name."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {spec.INPUT_NAME: np.ascontiguousarray(images, np.float32)})
    return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}


def parity_check(net: Any, model_path: Path, real_images: Sequence[np.ndarray] = ()) -> dict:
    """Compare torch `net` (a `FocusNet`) with the ONNX file on random, formula and real inputs.

    Returns {"max_abs_logit_diff": {...per input set}, "reference": {...}} where
    `reference` records the torch logits on `reference_inputs()` so tests can
    re-check the shipped file without torch. Raises AssertionError when any
    logit differs by more than 1e-3 (float32 summation-order noise is ~1e-5).
    """
    import torch

    rng = np.random.default_rng(0)
    sets: dict[str, np.ndarray] = {
        "random_uniform": rng.random((4, 1, 192, 256), dtype=np.float32),
        "random_odd_size": rng.random((2, 1, 200, 131), dtype=np.float32),
        **spec.reference_inputs(),
    }
    for i, img in enumerate(real_images):
        sets[f"real_{i}"] = np.asarray(img, np.float32)[None, None]
    diffs: dict[str, float] = {}
    reference: dict[str, list[float]] = {}
    net.eval()
    with torch.no_grad():
        for name, x in sets.items():
            t_logit = net(torch.from_numpy(x))[1].numpy()
            o_logit = run_onnx(model_path, x)["logit"]
            diffs[name] = float(np.max(np.abs(t_logit - o_logit)))
            if name in ("structured", "ramp"):
                reference[name] = [float(v) for v in t_logit]
    worst = max(diffs.values())
    assert worst < 1e-3, f"torch/onnxruntime logits differ by {worst:.3g}: {diffs}"
    return {"max_abs_logit_diff": diffs, "tolerance": 1e-3, "reference_logits": reference}


def input_spec_card() -> dict:
    """The `input` section of the model card (what the runtime scorer validates)."""
    return {
        "name": spec.INPUT_NAME,
        "dtype": "float32",
        "shape": ["N", 1, "H", "W"],
        "patch_px": spec.PATCH_PX,
        "min_side_px": spec.MIN_INPUT_PX,
        "intensity": "autofocus.scoring.preprocess.prepare(frame) — percentile-normalised grey, "
                     "1st pct → 0, 99.5th pct → 1, not clipped",
        "layout": "frames centre-cropped to whole 64-px patches; sides < 64 px mirror-padded",
    }


def export_model(net: Any, out_dir: Path, stem: str, card_extra: Mapping[str, Any],
                 real_images: Sequence[np.ndarray] = ()) -> tuple[Path, dict]:
    """Write `<stem>.onnx` and its card `<stem>.json` into `out_dir`; returns (path, card).

    The card holds the file's sha256 and size, the input/output spec, the
    preprocessing version, the parity check against torch (random, formula and
    `real_images` inputs) and everything in `card_extra` (training data,
    metrics...). Raises AssertionError when parity fails.
    """
    from autofocus_models.pipeline.net import head_weights

    from autofocus.scoring.model import sha256_of
    from autofocus.scoring.preprocess import PREPROCESS_VERSION

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{stem}.onnx"
    model = build_onnx(head_weights(net.head), doc=f"{stem}: multi-scale focus model",
                       topk_div=net.head.topk_div)
    onnx.save(model, onnx_path)
    parity = parity_check(net, onnx_path, real_images)
    n_params = sum(int(p.numel()) for p in net.head.parameters())
    card = {
        "name": "focusnet",
        "version": stem.split("-")[-1],
        "file": onnx_path.name,
        "sha256": sha256_of(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "onnx": {"opset": OPSET, "ir_version": IR_VERSION, "dynamic": ["N", "H", "W"]},
        "preprocess": {
            "version": PREPROCESS_VERSION,
            "function": "autofocus.scoring.preprocess.prepare",
            "intensity": "percentile",
        },
        "input": input_spec_card(),
        "outputs": {
            "score": "(N,) float32 in [0, 1]: sigmoid(logit), estimate of 1/(1+(dz/DOF)²)",
            "logit": "(N,) float32: mean of the top-k patch logits",
            "patch_logits": "(N, 1, H//64, W//64) float32: one focus logit per patch",
        },
        "architecture": {
            "front_end": "3 levels of a fixed 4×4 Walsh–Hadamard bank, stride 4 (scales "
                         "1–64 px); squared responses pooled per 64-px patch; h+v bands "
                         "summed; log; plus frame context (log frame mean, frame-averaged "
                         "log band energies) broadcast to every patch",
            "features": spec.feature_names(),
            "head": f"ensemble of {net.head.members} per-patch MLPs "
                    f"{spec.N_FEATURES}→{net.head.hidden}→{net.head.hidden}→1 (1×1 convs, "
                    "ReLU), patch logits averaged",
            "pooling": f"mean of top k = max(1, n_patches // {net.head.topk_div}) patch logits",
            "trainable_parameters": n_params,
        },
        "parity": parity,
        **dict(card_extra),
    }
    write_card(card, onnx_path.with_suffix(".json"))
    return onnx_path, card
