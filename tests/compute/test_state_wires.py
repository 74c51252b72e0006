"""State wires: a recurrent block's final state starting another's (encoder-decoder), and
TimeSlice, which lets one Input carry both sequences. BPTT through the handover is held to
float64 finite differences over the whole model; the handover itself to a closed form (the
decoder started from the encoder's last h and C computes what it computes from them as
learned initial states); problems in words."""
import re

import numpy as np
import pytest

from gradcheck import check_layer, numeric_grad

from gatescope.compute.graph import Block, GraphSpec, Model, Wire, analyse
from gatescope.compute.layers import ShapeError, create

ENCODER_STEPS, DECODER_STEPS, FEATURES = 4, 3, 2


def seq2seq_spec(encoder="LSTM", decoder="LSTM", hidden=(3, 3), decoder_settings=None, head="Regress",
                 bridge=None) -> GraphSpec:
    """Input (T1 + T2, F) -> TimeSlice [0, T1) -> encoder --state--> decoder <- TimeSlice [T1, T1 + T2),
    decoder (every step) -> Dense -> head. ``bridge``: a Dense of that many units between the
    encoder's output and the decoder's state port instead of the state itself."""
    blocks = [Block("in", "Input", {"shape": (ENCODER_STEPS + DECODER_STEPS, FEATURES)}),
              Block("question", "TimeSlice", {"start": 0, "length": ENCODER_STEPS}),
              Block("answer", "TimeSlice", {"start": ENCODER_STEPS, "length": DECODER_STEPS}),
              Block("enc", encoder, {"hidden_size": hidden[0]}),
              Block("dec", decoder, {"hidden_size": hidden[1], "return_sequences": True,
                                     **(decoder_settings or {})}),
              Block("dense", "Dense", {"units": 2}), Block("out", head, {})]
    wires = [Wire("in", "question"), Wire("in", "answer"), Wire("question", "enc"), Wire("answer", "dec", 0),
             Wire("dec", "dense"), Wire("dense", "out")]
    if bridge:
        blocks.append(Block("bridge", "Dense", {"units": bridge}))
        wires += [Wire("enc", "bridge"), Wire("bridge", "dec", 1)]
    else:
        wires.append(Wire("enc", "dec", 1))
    return GraphSpec(blocks, wires)


def model_gradients_match_finite_differences(spec: GraphSpec, seed: int = 0):
    model = Model(spec, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for _, p, _ in model.parameters():                          # biases and all: nothing left at zero
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    x = rng.standard_normal((3,) + tuple(model.input_shape))
    targets = rng.standard_normal((3, DECODER_STEPS, 2))

    def loss():
        model.forward(x, training=True)
        return model.loss(targets)

    model.zero_grads()
    loss()
    model.backward()
    analytic = {name: g.copy() for name, _, g in model.parameters()}
    for name, p, _ in model.parameters():
        np.testing.assert_allclose(analytic[name], numeric_grad(loss, p), rtol=1e-5, atol=1e-8,
                                   err_msg=f"gradient of {name}")
    return model, analytic


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_bptt_through_the_handover_matches_finite_differences(cell):
    _, analytic = model_gradients_match_finite_differences(seq2seq_spec(cell, cell))
    assert np.abs(analytic["enc/W"]).max() > 1e-3       # the encoder learns only through the state wire


def test_a_gru_may_start_a_simple_rnn_and_a_dense_output_may_start_an_lstm():
    model_gradients_match_finite_differences(seq2seq_spec("GRU", "SimpleRNN"))
    model_gradients_match_finite_differences(seq2seq_spec("LSTM", "LSTM", hidden=(4, 3), bridge=3))


def test_the_decoder_starts_from_the_encoders_last_h_and_c():
    """Closed form: the decoder's output equals the same LSTM run alone with its learned initial
    state set to the encoder's final h and C."""
    model = Model(seq2seq_spec(), seed=2, dtype=np.float64)
    x = np.random.default_rng(3).standard_normal((2,) + tuple(model.input_shape))
    model.forward(x)
    encoder, decoder = model.layers["enc"], model.layers["dec"]
    h, c = encoder.final_state()["h0"], encoder.final_state()["c0"]
    encoder_alone = create("LSTM", {"hidden_size": 3, "return_sequences": True})
    encoder_alone.build([(ENCODER_STEPS, FEATURES)], np.random.default_rng(0), np, np.float64)
    encoder_alone.params.update({k: v.copy() for k, v in encoder.params.items()})
    states = encoder_alone.forward([x[:, :ENCODER_STEPS]], False)
    np.testing.assert_allclose(h, states[:, -1])
    for sample in range(2):
        alone = create("LSTM", {"hidden_size": 3, "return_sequences": True, "initial_state": "learned"})
        alone.build([(DECODER_STEPS, FEATURES)], np.random.default_rng(0), np, np.float64)
        alone.params.update({k: v.copy() for k, v in decoder.params.items()})
        alone.params["h0"], alone.params["c0"] = h[sample].copy(), c[sample].copy()
        np.testing.assert_allclose(model.output_of("dec")[sample],
                                   alone.forward([x[sample:sample + 1, ENCODER_STEPS:]], False)[0])


@pytest.mark.parametrize("encoder,decoder,settings,message", [
    ("LSTM", "GRU", {}, "an LSTM's state \\(h and C\\) cannot start a GRU, whose state is h alone"),
    ("GRU", "LSTM", {}, "a GRU's state \\(h alone\\) cannot start an LSTM, whose state is h and C"),
    ("LSTM", "LSTM", {"bidirectional": True}, "a bidirectional LSTM cannot take a wired initial state"),
    ("LSTM", "LSTM", {"initial_state": "learned"}, "cannot also learn one; set Initial state to zero"),
])
def test_state_wire_problems_in_words(encoder, decoder, settings, message):
    analysis = analyse(seq2seq_spec(encoder, decoder, decoder_settings=settings))
    assert analysis.info["dec"].error is not None
    assert re.search(message, analysis.info["dec"].error), analysis.info["dec"].error


def test_state_sizes_must_match():
    analysis = analyse(seq2seq_spec(hidden=(4, 3)))
    assert analysis.info["dec"].error == ("the LSTM handing over its state has 4 units but this LSTM has 3; "
                                          "give both the same hidden size")
    analysis = analyse(seq2seq_spec(hidden=(4, 3), bridge=5))
    assert "fed a vector 5, but it takes a vector of 3 values (its hidden size) as h_0" in analysis.info["dec"].error


def test_an_encoder_read_only_through_its_state_is_used_and_older_graphs_are_unchanged():
    analysis = analyse(seq2seq_spec())
    assert analysis.ok, analysis.errors()
    assert analysis.info["enc"].warning is None                  # its state wire uses it
    assert analysis.info["dec"].in_shapes == [(DECODER_STEPS, FEATURES)]
    plain = analyse(GraphSpec.chain(("Input", {"shape": (5, 2)}), ("LSTM", {"hidden_size": 3}), ("Regress", {})))
    assert plain.ok and plain.info["b1"].param_count == 4 * 3 * (2 + 3 + 1)


def test_time_slice_keeps_the_steps_asked_for():
    x = np.random.default_rng(4).standard_normal((2, 7, 3))
    layer = create("TimeSlice", {"start": 2, "length": 4})
    np.testing.assert_array_equal(layer.forward([x], True), x[:, 2:6])
    assert layer.output_shape([(7, 3)]) == (4, 3) and layer.size_formula([(7, 3)]) == "steps 2 to 5 of 7: 4 steps"
    assert create("TimeSlice", {"start": 3}).output_shape([(7, 3)]) == (4, 3)
    check_layer(create("TimeSlice", {"start": 2, "length": 4}), [x])
    with pytest.raises(ShapeError, match="keeps steps 5 to 8, but the sequence has 7 steps"):
        create("TimeSlice", {"start": 5, "length": 4}).output_shape([(7, 3)])
    with pytest.raises(ShapeError, match="fed a vector 7, which has no time axis"):
        create("TimeSlice").output_shape([(7,)])


def test_repeat_steps_makes_a_sequence_of_one_vector():
    x = np.random.default_rng(5).standard_normal((3, 4))
    layer = create("RepeatSteps", {"steps": 5})
    y = layer.forward([x], True)
    assert y.shape == (3, 5, 4) and layer.output_shape([(4,)]) == (5, 4)
    for t in range(5):
        np.testing.assert_array_equal(y[:, t], x)
    check_layer(create("RepeatSteps", {"steps": 5}), [x])
    with pytest.raises(ShapeError, match="repeats a vector, but is fed an image 1x8x8; put Flatten"):
        layer.output_shape([(1, 8, 8)])
