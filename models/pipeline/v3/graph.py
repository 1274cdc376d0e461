"""focusnet-v3 as an ONNX graph: fixed front end on raw intensities + a small per-patch head.

The graph is written node by node with `onnx.helper` (training-time dependency
only). One graph, batched, input `image` float32 (N, 1, H, W) in camera units
(the output of `autofocus.scoring.model.model_input(frame, "2", 64)`:
grey luminance, centre-cropped to whole 64-px patches, NOT normalised), N/H/W
dynamic, H and W multiples of 64.

Front end (no trainable parameters; the same Walsh–Hadamard bank as v1/v2):

1. Three levels of the 4×4 Walsh bank with stride 4; squared responses pooled
   per 64-px patch; h+v bands summed: 12 band energies per patch, in
   intensity² (camera units), plus the patch mean intensity.
2. Normalisation happens *inside* the graph, on the energies, so that the
   contrast that classical measures live on survives: the frame's detail
   energy V (sum of its 12 frame-averaged band energies) and mean level μ.
   Per patch: log(E_patch / V) (12, local spectrum and its level relative to
   the frame), log(E_frame / V) (12, the frame's spectral shape), log(V / μ²)
   (the frame's absolute contrast relative to its brightness: exposure- and
   gain-invariant, falls with defocus), (μ_patch − μ) / √V. 26 features.

Head: standardisation (folded into the first layer's weights), a per-patch MLP
26→H→H (1×1 convs, ReLU) and a linear
output layer H→4 per patch: score logit `s`, log-distance mean `m`, its
log-variance `lv`, specimen logit `q`. Pooling: the frame logit is the mean of
the top k = max(1, n_patches // TOPK_DIV) patch `s`; `m` and `lv` are averaged
over the same k patches; the specimen logit is the mean of the top
max(1, n_patches // TOPK_Q_DIV) `q` (a few specimen patches are enough).

Outputs (all (N,) float32 unless said):
`score` = sigmoid(logit) (ranking, estimate of 1/(1+(dz/DOF)²)); `logit`;
`distance_dof` = max(exp(m) − DIST_OFFSET, 0) (|dz| in DOF units);
`log_distance` = m; `log_distance_var` = lv (variance of log(|dz|/DOF + DIST_OFFSET));
`no_specimen_p` = sigmoid(−specimen logit); `hidden` (N, H, gh, gw) the
last hidden layer per patch (what on-site calibration refits the output
layer on); `features` (N, 26, gh, gw) the front-end features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

try:  # the `train` extra: only building a graph needs it, not the constants or data
    import onnx

    # The v1/v2 builder and Walsh–Hadamard front end (it imports onnx too).
    from autofocus_models.pipeline.export import AXIS_1, GraphBuilder, walsh_front_end
    from onnx import TensorProto, helper
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    onnx = TensorProto = helper = None

OPSET = 17
IR_VERSION = 9
N_FEATURES = 26
N_OUT = 4
TOPK_DIV = 4
TOPK_Q_DIV = 16
"""Specimen logit: mean of the top max(1, n_patches // TOPK_Q_DIV) patches (a few beads count)."""
DIST_OFFSET = 0.3
"""|dz| (DOF units) is regressed as log(|dz| + DIST_OFFSET): errors scale with distance."""
ENERGY_EPS_REL = 1e-8
"""Energies get ENERGY_EPS_REL · μ² + ENERGY_EPS_ABS added before logs (blank frames)."""
ENERGY_EPS_ABS = 1e-10
INPUT_NAME = "image"
OUT_WEIGHT = "head_out.weight"
OUT_BIAS = "head_out.bias"


def feature_names() -> list[str]:
    """Per-patch feature names in channel order (model card, debugging)."""
    bands = [f"{lvl}_{b}" for lvl in "ABC" for b in ("seq1", "seq2", "seq3", "diag")]
    return ([f"log_patch_{b}_over_V" for b in bands] + [f"log_frame_{b}_over_V" for b in bands]
            + ["log_V_over_mean2", "patch_mean_minus_mean_over_sqrtV"])


def _front_end(g: GraphBuilder) -> str:
    energies, patch_mean = walsh_front_end(g, INPUT_NAME)           # (N, 1, gh, gw)
    bands = g.op("Concat", energies, "bands", axis=1)               # (N, 12, gh, gw)
    mu = g.op("ReduceMean", [patch_mean], "frame_mean", axes=[2, 3], keepdims=1)
    mu2 = g.op("Mul", [mu, mu], "frame_mean_sq")
    eps = g.op("Add", [g.op("Mul", [mu2, g.const("eps_rel", np.array(ENERGY_EPS_REL,
                                                                      np.float32))]),
                       g.const("eps_abs", np.array(ENERGY_EPS_ABS, np.float32))], "energy_eps")
    frame_bands = g.op("ReduceMean", [bands], "frame_bands", axes=[2, 3], keepdims=1)
    v = g.op("Add", [g.op("ReduceSum", [frame_bands, AXIS_1], "frame_v_lin", keepdims=1), eps],
             "frame_v")                                              # (N, 1, 1, 1)
    log_v = g.op("Log", [v], "log_v")
    log_pb = g.op("Sub", [g.op("Log", [g.op("Add", [bands, eps])]), log_v], "log_patch_bands")
    log_fb = g.op("Sub", [g.op("Log", [g.op("Add", [frame_bands, eps])]), log_v],
                  "log_frame_bands")
    contrast = g.op("Sub", [log_v, g.op("Log", [g.op("Add", [mu2, eps])])], "log_contrast")
    rel_mean = g.op("Div", [g.op("Sub", [patch_mean, mu]), g.op("Sqrt", [v])], "rel_mean")
    shape1 = g.op("Shape", [patch_mean])
    shape12 = g.op("Shape", [bands])
    return g.op("Concat", [
        log_pb,
        g.op("Expand", [log_fb, shape12], "frame_bands_map"),
        g.op("Expand", [contrast, shape1], "contrast_map"),
        rel_mean,
    ], "features", axis=1)


def build_onnx(head: Mapping[str, np.ndarray], *, doc: str = "",
               topk_div: int = TOPK_DIV) -> onnx.ModelProto:
    """The v3 graph for `head` weights: feature_mean/std (26,), l1.weight (H, 26), l1.bias,
    l2.weight (H, H), l2.bias, head_out.weight (4, H), head_out.bias (4,).

    Raises `onnx.checker.ValidationError` if the graph is malformed.
    """
    if onnx is None:
        raise ImportError("building the focusnet-v3 graph needs the `onnx` package: "
                          "pip install 'autofocus-service[train]'")
    g = GraphBuilder()
    feats = _front_end(g)
    # Standardisation folded into the first layer (exact): W' = W / std, b' = b − W'·mean.
    std = np.asarray(head["feature_std"], np.float64)
    mean = np.asarray(head["feature_mean"], np.float64)
    w1 = np.asarray(head["l1.weight"], np.float64) / std[None, :]
    b1 = np.asarray(head["l1.bias"], np.float64) - w1 @ mean
    layers = {1: (w1, b1), 2: (head["l2.weight"], head["l2.bias"])}
    h = feats
    for i in (1, 2):
        w, b = (np.asarray(a, np.float32) for a in layers[i])
        h = g.op("Conv", [h, g.const(f"l{i}.weight", w[:, :, None, None]),
                          g.const(f"l{i}.bias", b)], f"hidden{i}_lin", kernel_shape=[1, 1])
        h = g.op("Relu", [h], "hidden" if i == 2 else f"hidden{i}")
    w_out = np.asarray(head[OUT_WEIGHT], np.float32)
    out = g.op("Conv", ["hidden", g.const(OUT_WEIGHT, w_out[:, :, None, None]),
                        g.const(OUT_BIAS, np.asarray(head[OUT_BIAS], np.float32))],
               "patch_out", kernel_shape=[1, 1])                    # (N, 4, gh, gw)
    flat = g.op("Reshape", [out, g.const("shape_n4p", np.array([0, N_OUT, -1], np.int64))],
                "patch_out_flat3")                                  # (N, 4, P)
    # Channels as (N, 1, P): pooling works on axis 2 and reduces axes 1 and 2, no Squeeze.
    s, m, lv, q = "patch_s", "patch_m", "patch_lv", "patch_q"
    g.nodes.append(helper.make_node("Split", [flat], [s, m, lv, q], name="split_channels",
                                    axis=1))
    n_patches = g.op("Gather", [g.op("Shape", [flat]), g.const("axis_2", np.array(
        [2], np.int64))], "n_patches", axis=0)
    k = g.op("Max", [g.op("Div", [n_patches, g.const("topk_div", np.array([int(topk_div)],
                                                                          np.int64))]),
                     g.const("one", np.array([1], np.int64))], "k")
    g.nodes.append(helper.make_node("TopK", [s, k], ["top_s", "top_idx"], name="topk_s",
                                    axis=2, largest=1, sorted=0))
    g.op("ReduceMean", ["top_s"], "logit", axes=[1, 2], keepdims=0)
    g.op("Sigmoid", ["logit"], "score")
    top_m = g.op("GatherElements", [m, "top_idx"], "top_m", axis=2)
    top_lv = g.op("GatherElements", [lv, "top_idx"], "top_lv", axis=2)
    m_f = g.op("ReduceMean", [top_m], "log_distance", axes=[1, 2], keepdims=0)
    g.op("ReduceMean", [top_lv], "log_distance_var", axes=[1, 2], keepdims=0)
    g.op("Relu", [g.op("Sub", [g.op("Exp", [m_f]), g.const(
        "dist_offset", np.array(DIST_OFFSET, np.float32))])], "distance_dof")
    k_q = g.op("Max", [g.op("Div", [n_patches, g.const("topk_q_div", np.array([TOPK_Q_DIV],
                                                                            np.int64))]),
                       "one"], "k_q")
    g.nodes.append(helper.make_node("TopK", [q, k_q], ["top_q", "top_q_idx"], name="topk_q",
                                    axis=2, largest=1, sorted=0))
    spec_logit = g.op("ReduceMean", ["top_q"], "specimen_logit", axes=[1, 2], keepdims=0)
    g.op("Sigmoid", [g.op("Neg", [spec_logit])], "no_specimen_p")

    n = ["N"]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, n) for name in
               ("score", "logit", "distance_dof", "log_distance", "log_distance_var",
                "no_specimen_p")]
    outputs.append(helper.make_tensor_value_info("hidden", TensorProto.FLOAT,
                                                 ["N", int(w_out.shape[1]), "GH", "GW"]))
    outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT,
                                                 ["N", N_FEATURES, "GH", "GW"]))
    graph = helper.make_graph(
        g.nodes, "focusnet_v3",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 1, "H", "W"])],
        outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autofocus autofocus_models.pipeline.v3",
                              doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def random_head(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A head with random weights and identity standardisation (feature extraction, tests)."""
    return {
        "feature_mean": np.zeros(N_FEATURES, np.float32),
        "feature_std": np.ones(N_FEATURES, np.float32),
        "l1.weight": rng.normal(0, 0.3, (hidden, N_FEATURES)).astype(np.float32),
        "l1.bias": np.zeros(hidden, np.float32),
        "l2.weight": rng.normal(0, 0.3, (hidden, hidden)).astype(np.float32),
        "l2.bias": np.zeros(hidden, np.float32),
        OUT_WEIGHT: rng.normal(0, 0.3, (N_OUT, hidden)).astype(np.float32),
        OUT_BIAS: np.zeros(N_OUT, np.float32),
    }
