"""Graph-level ops: the ONNX-like op set the frontend produces (IR name = ONNX op type in snake_case).

    elementwise  unary and binary math, comparisons, logic, where, cast, max, min, clip
    linalg       matmul, gemm
    nn           softmax, layer_normalization, gelu
    reduce       reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_prod
    shape        reshape, flatten, squeeze, unsqueeze, transpose, expand, concat, split, shape, size, identity,
                 constant_of_shape, range
    indexing     slice, gather, gather_nd, scatter_nd, trilu, cumsum
"""

from cgpt.ir.ops.graph import elementwise, indexing, linalg, nn, reduce, shape  # noqa: F401
