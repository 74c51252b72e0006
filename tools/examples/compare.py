"""The comparison examples (issue 19): each project saves the comparison that makes a lecture's
point, run from one click (Compare view, Ctrl+5, then Compare) or ``gatescope compare FILE``."""
from gatescope.compute.train import TrainSettings
from gatescope.studio.compare_choice import CompareChoice
from tools.examples.digits import chain_project
from tools.examples.sequences import adding_project, digits_rows_lstm


def adding_rnn_lstm_gru():
    project = adding_project(
        "adding-rnn-lstm-gru", ("LSTM", {"hidden_size": 64}),
        "The adding problem at T = 100 (sum the two marked values of a long sequence) with a plain RNN, "
        "an LSTM and a GRU trained side by side on the same batches: open the Compare view (Ctrl+5) and "
        "press Compare. The RNN's gradient vanishes through time and it stays near the 0.167 of always "
        "answering 1.0; the LSTM and the GRU carry the marked values across the gap, the GRU with a "
        "quarter fewer parameters.")
    project.compare = CompareChoice("swap", "lstm1", ("SimpleRNN", "LSTM", "GRU"))
    return project


def digits_rows_gated():
    project = digits_rows_lstm()
    project.name = "digits-rows-gated"
    project.description = (
        "Digits read row by row (8 steps of 8 pixels) by the gated cells of the lectures, side by side on the "
        "same batches: a standard LSTM, a GRU, a peephole LSTM (its gates see the cell state) and a coupled "
        "LSTM (input gate = 1 - forget gate). Open the Compare view (Ctrl+5) and press Compare: they end "
        "within a few points of each other, with different parameter counts.")
    project.training = TrainSettings(**dict(project.training.to_dict(), epochs=20))
    project.compare = CompareChoice("swap", "lstm1", ("LSTM", "GRU", "LSTM:peephole", "LSTM:coupled"))
    return project


def exploding_relu_rnn():
    project = chain_project(
        "exploding-relu-rnn",
        "Exploding gradients (the lectures' other limit of backpropagation through time): a ReLU RNN reads "
        "the digits row by row, trained by SGD with momentum at a learning rate high enough for its "
        "gradient to blow up. Compare (Ctrl+5, then Compare) trains it without and with gradient clipping "
        "on the same batches: unclipped, the gradient norm usually grows by orders of magnitude within a "
        "few dozen steps until it overflows and the run stops (whether it does depends on rounding, so on "
        "the machine), and the model never learns; clipped to norm 0.25, the same model learns.",
        [("Input", {"shape": (8, 8)}), ("SimpleRNN", {"hidden_size": 64, "activation": "relu"}),
         ("Dense", {"units": 10}), ("Classify", {})],
        # Whether the unclipped run overflows depends on rounding. At a learning rate of 0.1 it did
        # with the NumPy twins and not with the numba kernels (largest gradient norm 19; 57% against
        # 89% clipped). At 0.25 it overflowed in three of four runs (numba or twins, one or two BLAS
        # threads; largest norms 3e4 to 2e12) and reached 7-33% in all four; clipped to 0.25 the
        # model reaches 93-96% (clipped to 0.5: 82%, to 1: 47-52%).
        TrainSettings(epochs=15, batch_size=32, optimizer="sgd", learning_rate=0.25, momentum=0.9, seed=0,
                      val_fraction=0.1, test_fraction=0.2),
        {"kind": "builtin", "name": "digits", "params": {"layout": "rows"}})
    project.compare = CompareChoice("vary", "training", (0.0, 0.25), setting="clip_norm")
    return project


EXAMPLES = {"adding-rnn-lstm-gru": adding_rnn_lstm_gru, "digits-rows-gated": digits_rows_gated,
            "exploding-relu-rnn": exploding_relu_rnn}
