"""The layers INT8 keeps FP32: the weighted nodes nearest the input and the outputs, found on
hand-built graphs whose answer is known."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from headstart.export.quantize import boundary_layers, cpu_int8


def _graph(nodes, inputs=("x",), outputs=("y",)):
    w = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), name=f"w{i}") for i in range(8)]
    return helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, None) for i in inputs],
                                               [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], initializer=w))


def test_a_chain_keeps_its_first_and_last_weighted_layer():
    m = _graph([helper.make_node("Cast", ["x"], ["c"], name="cast", to=1), helper.make_node("Conv", ["c", "w0"], ["a"], name="stem"),
                helper.make_node("Relu", ["a"], ["b"], name="relu"), helper.make_node("Conv", ["b", "w1"], ["d"], name="mid"),
                helper.make_node("Conv", ["d", "w2"], ["e"], name="mid2"), helper.make_node("Flatten", ["e"], ["f"], name="flat"),
                helper.make_node("MatMul", ["f", "w3"], ["y"], name="head")])
    assert boundary_layers(m) == ["stem", "head"]


def test_branches_each_keep_their_first_layer_and_an_average_keeps_both_heads():
    # two members side by side (an ensemble): each has a stem and a head; the mean of the heads is the output
    m = _graph([helper.make_node("Conv", ["x", "w0"], ["a1"], name="stem1"), helper.make_node("Conv", ["a1", "w1"], ["b1"], name="mid1"),
                helper.make_node("Gemm", ["b1", "w2"], ["h1"], name="head1"),
                helper.make_node("Conv", ["x", "w3"], ["a2"], name="stem2"), helper.make_node("Conv", ["a2", "w4"], ["b2"], name="mid2"),
                helper.make_node("Gemm", ["b2", "w5"], ["h2"], name="head2"),
                helper.make_node("Add", ["h1", "h2"], ["s"], name="add"), helper.make_node("Softmax", ["s"], ["y"], name="softmax")])
    assert set(boundary_layers(m)) == {"stem1", "stem2", "head1", "head2"}


def test_a_one_layer_graph_is_kept_once():
    m = _graph([helper.make_node("Conv", ["x", "w0"], ["y"], name="only")])
    assert boundary_layers(m) == ["only"]


def test_cpu_flags_are_read():
    from pathlib import Path

    info = cpu_int8()
    assert isinstance(info["cpu"], str) and info["cpu"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
        assert info["vnni"] == any(f in ("avx512_vnni", "avx_vnni", "amx_int8") for f in flags)
