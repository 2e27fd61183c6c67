"""A static check that TensorRT 10's ONNX parser will accept a graph.

TensorRT cannot be installed on our CI machines, so export checks the graph against the parser's
documented support (onnx-tensorrt docs/operators.md for TensorRT 10.0, opsets 9-20): operators,
data types, and shapes (static except the batch axis).
"""
from __future__ import annotations

OPSET_RANGE = (9, 20)

# Operators the TensorRT 10 ONNX parser supports (onnx-tensorrt, docs/operators.md, TensorRT 10.0).
TRT10_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# Ops whose integer inputs are shapes / indices / axes (int64 there is fine: the parser casts them).
SHAPE_OPS = frozenset("Reshape Slice Squeeze Unsqueeze Gather Expand Tile ConstantOfShape Range Split Shape "
                      "Concat Constant Identity Cast Pad".split())


def check_graph(model) -> list[str]:
    """Problems TensorRT 10 would have with an onnx.ModelProto; empty when it is compatible."""
    import onnx
    from onnx import TensorProto as TP
    problems: list[str] = []
    bad_types = {TP.DOUBLE: "double", TP.COMPLEX64: "complex64", TP.COMPLEX128: "complex128", TP.STRING: "string"}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"opset {opset} outside TensorRT 10's range {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")
    g = model.graph
    for n in g.node:
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"node {n.name or n.op_type}: custom domain {n.domain!r}")
        elif n.op_type not in TRT10_OPS:
            problems.append(f"node {n.name or n.op_type}: operator {n.op_type} is not supported by TensorRT")
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in bad_types:
                problems.append(f"node {n.name}: {bad_types[a.t.data_type]} constant")
            if n.op_type == "Cast" and a.name == "to" and a.i in bad_types:
                problems.append(f"node {n.name}: cast to {bad_types[a.i]}")
    for t in g.initializer:
        if t.data_type in bad_types:
            problems.append(f"initializer {t.name}: {bad_types[t.data_type]} tensor")
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
        values = list(inferred.value_info)
    except Exception:  # noqa: BLE001 - inference gaps are not TensorRT problems
        values = list(g.value_info)
    for v in values:
        if v.type.tensor_type.elem_type in bad_types:
            problems.append(f"tensor {v.name}: {bad_types[v.type.tensor_type.elem_type]}")
    for io, kind in ((g.input, "input"), (g.output, "output")):
        for v in io:
            tt = v.type.tensor_type
            if tt.elem_type in bad_types:
                problems.append(f"graph {kind} {v.name}: {bad_types[tt.elem_type]} tensor")
            elif tt.elem_type == TP.INT64:
                problems.append(f"graph {kind} {v.name}: INT64 tensor (use float32 I/O)")
            for i, d in enumerate(tt.shape.dim):
                if i > 0 and not d.HasField("dim_value"):
                    problems.append(f"graph {kind} {v.name}: axis {i} is dynamic ({d.dim_param or '?'}); only the batch axis may be")
    return problems
