"""Graph analysis with the feed-forward blocks: validation messages, shape inference through
a small CNN, a time-distributed Conv2D over video clips, parameter counts vs textbook formulas."""
import numpy as np

from gatescope.compute.graph import Block, GraphSpec, Model, Wire, analyse


def cnn(*middle):
    return GraphSpec.chain(("Input", {"shape": (3, 32, 32)}), *middle, ("Classify", {}))


def test_small_cnn_shapes_and_parameter_counts():
    # The lectures' exercise: CONV1 f=5 8 filters, POOL, CONV2 f=5 16 filters, POOL, FC 120, 84, 10.
    spec = cnn(("Conv2D", {"filters": 8, "kernel_size": 5}), ("ReLU", {}), ("MaxPool2D", {"size": 2}),
               ("Conv2D", {"filters": 16, "kernel_size": 5}), ("ReLU", {}), ("MaxPool2D", {"size": 2}),
               ("Flatten", {}), ("Dense", {"units": 120}), ("Dense", {"units": 84}), ("Dense", {"units": 10}))
    a = analyse(spec)
    assert a.ok, a.errors()
    shapes = [a.info[f"b{i}"].out_shape for i in range(11)]
    assert shapes == [(3, 32, 32), (8, 28, 28), (8, 28, 28), (8, 14, 14), (16, 10, 10), (16, 10, 10),
                      (16, 5, 5), (400,), (120,), (84,), (10,)]
    # Textbook formulas: filters x (f*f*C + 1) and units x (inputs + 1).
    assert a.info["b1"].param_count == 8 * (5 * 5 * 3 + 1) == 608
    assert a.info["b1"].param_formula == "8 x (5x5x3 + 1) = 608"
    assert a.info["b4"].param_count == 16 * (5 * 5 * 8 + 1) == 3216
    assert a.info["b8"].param_count == 120 * (400 + 1) == 48120
    assert a.info["b3"].param_count == 0
    model = Model(spec)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert model.forward(x).shape == (2, 10)
    model.loss(np.array([1, 2]))
    model.backward()
    assert all(np.abs(g).sum() > 0 for _, _, g in model.parameters())


def test_time_distributed_conv_over_a_clip():
    spec = GraphSpec.chain(("Input", {"shape": (4, 1, 8, 8)}), ("Conv2D", {"filters": 3, "padding": "same"}),
                           ("BatchNorm", {}), ("MaxPool2D", {"size": 2}), ("GlobalAvgPool", {}),
                           ("Dense", {"units": 5}), ("Classify", {}))
    a = analyse(spec)
    assert a.ok, a.errors()
    assert a.info["b1"].time_distributed and a.info["b1"].out_shape == (4, 3, 8, 8)
    assert a.info["b3"].out_shape == (4, 3, 4, 4) and a.info["b4"].out_shape == (4, 3)
    assert a.info["b1"].param_count == 3 * (3 * 3 * 1 + 1)  # shared over the 4 frames
    model = Model(spec, dtype=np.float64)
    clip = np.random.default_rng(1).standard_normal((2, 4, 1, 8, 8))
    out = model.forward(clip, training=False)
    assert out.shape == (2, 4, 5)
    # Every frame goes through the same filters: frame 2 alone gives the same features.
    conv = model.layers["b1"]
    frame = conv.forward([clip[:, 2]], False)
    np.testing.assert_allclose(model.output_of("b1")[:, 2], frame)
    model.forward(clip, training=True)
    model.loss(np.zeros((2, 4), dtype=int))
    model.backward()
    assert np.abs(conv.grads["W"]).sum() > 0


def test_residual_add_and_concat_graph():
    spec = GraphSpec(
        [Block("in", "Input", {"shape": (4, 8, 8)}), Block("c1", "Conv2D", {"filters": 4, "padding": "same"}),
         Block("add", "Add"), Block("c2", "Conv2D", {"filters": 2, "padding": 1}), Block("cat", "Concat"),
         Block("gap", "GlobalAvgPool"), Block("fc", "Dense", {"units": 3}), Block("out", "Classify")],
        [Wire("in", "c1"), Wire("c1", "add", 0), Wire("in", "add", 1), Wire("add", "c2"), Wire("add", "cat", 0),
         Wire("c2", "cat", 1), Wire("cat", "gap"), Wire("gap", "fc"), Wire("fc", "out")])
    a = analyse(spec)
    assert a.ok, a.errors()
    assert a.info["cat"].out_shape == (6, 8, 8)
    model = Model(spec, dtype=np.float64)
    model.forward(np.random.default_rng(2).standard_normal((3, 4, 8, 8)), training=True)
    model.loss(np.array([0, 1, 2]))
    model.backward()
    assert np.abs(model.layers["c1"].grads["W"]).sum() > 0


def test_errors_are_explained():
    a = analyse(GraphSpec.chain(("Input", {"shape": (1, 3, 3)}), ("Conv2D", {"kernel_size": 5}),
                                ("Flatten", {}), ("Classify", {})))
    assert a.info["b1"].error == "kernel 5 is larger than the 3x3 input; use padding or a smaller kernel"
    assert a.info["b2"].error == "waits for the block before it, which has a problem"
    assert not a.ok

    a = analyse(GraphSpec.chain(("Input", {"shape": (20, 3)}), ("Conv2D", {}), ("Classify", {})))
    assert a.info["b1"].error == "Conv2D expects an image per sample (or a sequence of them), but is fed a sequence 20x3"

    a = analyse(GraphSpec.chain(("Input", {"shape": (10,)}), ("MaxPool2D", {}), ("Classify", {})))
    assert "MaxPool2D expects an image per sample" in a.info["b1"].error

    unequal = GraphSpec(
        [Block("in", "Input", {"shape": (3, 8, 8)}), Block("a", "Conv2D", {"filters": 16, "padding": "same"}),
         Block("b", "Conv2D", {"filters": 32, "padding": "same"}), Block("add", "Add"),
         Block("f", "Flatten"), Block("out", "Classify")],
        [Wire("in", "a"), Wire("in", "b"), Wire("a", "add", 0), Wire("b", "add", 1), Wire("add", "f"),
         Wire("f", "out")])
    assert analyse(unequal).info["add"].error == "Add needs inputs of equal shape; got 16x8x8 and 32x8x8"

    one_input = GraphSpec([Block("in", "Input", {"shape": (4,)}), Block("add", "Add"), Block("out", "Classify")],
                          [Wire("in", "add", 0), Wire("add", "out")])
    assert analyse(one_input).info["add"].error == "needs two or more inputs wired, one per port"


def test_graph_structure_errors():
    unconnected = GraphSpec([Block("in", "Input", {"shape": (1, 8, 8)}), Block("c", "Conv2D"),
                             Block("out", "Classify")], [Wire("c", "out")])
    a = analyse(unconnected)
    assert a.info["c"].error == "its input is not connected; wire a block's output into it"
    assert a.info["in"].warning == "its output is not used; wire it on or delete it"

    cycle = GraphSpec([Block("in", "Input", {"shape": (4,)}), Block("a", "Dense"), Block("b", "Add"),
                       Block("out", "Classify")],
                      [Wire("in", "b", 0), Wire("a", "b", 1), Wire("b", "a"), Wire("b", "out")])
    a = analyse(cycle)
    assert a.info["a"].error.startswith("is part of a cycle")

    empty = analyse(GraphSpec([Block("c", "Conv2D")]))
    assert "the model has no Input block; drag one from the Input group" in empty.graph_errors
    assert "the model has no output block; end it with Classify or Regress" in empty.graph_errors


def test_conv1d_in_a_sequence_model():
    spec = GraphSpec.chain(("Input", {"shape": (16, 2)}), ("Conv1D", {"filters": 4, "kernel_size": 3}),
                           ("MaxPool1D", {"size": 2}), ("GlobalAvgPool", {}), ("Dense", {"units": 3}),
                           ("Classify", {}))
    a = analyse(spec)
    assert a.ok, a.errors()
    assert [a.info[f"b{i}"].out_shape for i in (1, 2, 3)] == [(14, 4), (7, 4), (4,)]
    assert a.info["b1"].param_formula == "4 x (3x2 + 1) = 28"
    assert Model(spec).forward(np.zeros((5, 16, 2), np.float32)).shape == (5, 3)
