# ruff: noqa: E501  (IR text lines are as long as they are)
"""Small hand-written modules shared by the IR tests."""

SMALL = """\
module @small attributes {source = "hand-written"} {
  func @main(%x: tensor<?batchx?seqx8xf32>, %y: tensor<8xf32>) -> (tensor<?batchx?seqx8xf32>) {
    %w = weight "layer.weight" : tensor<8xf32>
    %c = constant dense<[1.5, -2.0, 0.25, 1e-05, 3.0, 4.0, 5.0, 6.0]> : tensor<8xf32>
    %0 = add(%x, %y) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32> loc("/h.0/Add")
    %1 = mul(%0, %w) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32> loc("/h.0/Mul")
    %2 = add(%x, %y) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32> loc("/h.0/Add_1")
    %3 = sub(%1, %2) : (tensor<?batchx?seqx8xf32>, tensor<?batchx?seqx8xf32>) -> tensor<?batchx?seqx8xf32> loc(fused["/h.0/Sub", "/h.0/Neg"])
    %4 = mul(%3, %c) : (tensor<?batchx?seqx8xf32>, tensor<8xf32>) -> tensor<?batchx?seqx8xf32>
    %dead = neg(%4) : (tensor<?batchx?seqx8xf32>) -> tensor<?batchx?seqx8xf32>
    return %4 : tensor<?batchx?seqx8xf32>
  }
}
"""
