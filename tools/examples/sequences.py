"""The recurrent examples: the adding problem (LSTM vs Elman RNN), digits read row by row,
the lectures' "hello", and character-level text."""
from gatescope.compute.train import TrainSettings
from tools.examples.digits import chain_project


def adding_project(name: str, recurrent: tuple[str, dict], description: str):
    return chain_project(
        name, description,
        [("Input", {"shape": (100, 2)}), recurrent, ("Dense", {"units": 1}), ("Regress", {})],
        TrainSettings(epochs=20, batch_size=64, optimizer="adam", learning_rate=2e-3, clip_norm=1.0,
                      seed=0, val_fraction=0.05, test_fraction=0.1),
        {"kind": "builtin", "name": "adding", "params": {"n": 10000, "length": 100, "seed": 0}})


def adding_lstm():
    return adding_project("adding-lstm", ("LSTM", {"hidden_size": 64}),
                   "The adding problem (Hochreiter & Schmidhuber 1997) at T = 100: sum the two marked "
                   "values of a long sequence. The LSTM's cell state carries them across the gap; compare "
                   "with adding-rnn, same data and budget. Always answering 1.0 scores MSE 0.167.")


def adding_rnn():
    return adding_project("adding-rnn", ("SimpleRNN", {"hidden_size": 64, "activation": "tanh"}),
                   "The adding problem at T = 100 with a plain (Elman) RNN: its gradient vanishes "
                   "through time, so it stays near the 0.167 of always answering 1.0. Compare with "
                   "adding-lstm and the gradients-through-time panel.")


def digits_rows_lstm():
    return chain_project(
        "digits-rows-lstm",
        "An LSTM reads each 8x8 digit one row at a time (8 steps of 8 pixels) and classifies it "
        "from its last hidden state: many-to-one.",
        [("Input", {"shape": (8, 8)}), ("LSTM", {"hidden_size": 64}), ("Dense", {"units": 10}), ("Classify", {})],
        TrainSettings(epochs=40, batch_size=32, optimizer="adam", learning_rate=5e-3, seed=0,
                      val_fraction=0.1, test_fraction=0.2),
        {"kind": "builtin", "name": "digits", "params": {"layout": "rows"}})


def hello_lstm():
    return chain_project(
        "hello-lstm",
        "The lectures' 'hello' example: vocabulary h, e, l, o, one-hot inputs h e l l and targets "
        "e l l o at every step. After training, generation from 'h' spells 'hello'.",
        [("Input", {"shape": (4, 4)}), ("LSTM", {"hidden_size": 8, "return_sequences": True}),
         ("Dense", {"units": 4}), ("Classify", {"class_names": "h,e,l,o"})],
        TrainSettings(epochs=150, batch_size=32, optimizer="adam", learning_rate=0.05, seed=0,
                      val_fraction=0.0, test_fraction=0.0),
        {"kind": "builtin", "name": "hello", "params": {"n": 32}})


def text_lstm():
    return chain_project(
        "text-lstm",
        "A character-level LSTM on Alice's Adventures in Wonderland (public domain): it reads 50 "
        "characters and predicts each next one. Generate text from a prefix in the text panel.",
        [("Input", {"shape": (50, 73)}), ("LSTM", {"hidden_size": 128, "return_sequences": True}),
         ("Dense", {"units": 73}), ("Classify", {})],
        TrainSettings(epochs=20, batch_size=64, optimizer="adam", learning_rate=3e-3, clip_norm=5.0, seed=0,
                      val_fraction=0.05, test_fraction=0.05),
        {"kind": "builtin", "name": "text", "params": {"n": 8000, "length": 50, "seed": 0}})




def addition_seq2seq():
    """Input (question + answer steps) -> TimeSlice each -> LSTM encoder --state--> LSTM decoder -> Dense -> Classify."""
    from gatescope.compute.datasets.sequences import ADDITION_VOCAB
    from gatescope.compute.graph import Block, GraphSpec, Wire
    from gatescope.studio.layout import LAYER_X, LAYER_Y, layered_positions
    from gatescope.studio.project import Project
    digits, hidden = 3, 128
    question, answer, vocabulary = 2 * digits + 1, digits + 2, len(ADDITION_VOCAB)
    blocks = [Block("input", "Input", {"shape": (question + answer, vocabulary)}),
              Block("question", "TimeSlice", {"start": 0, "length": question}),
              Block("answer", "TimeSlice", {"start": question, "length": answer}),
              Block("encoder", "LSTM", {"hidden_size": hidden}),
              Block("decoder", "LSTM", {"hidden_size": hidden, "return_sequences": True}),
              Block("dense", "Dense", {"units": vocabulary}),
              Block("classify", "Classify", {"class_names": ",".join({" ": "space", "=": "start", ".": "end"}.get(c, c)
                                                                    for c in ADDITION_VOCAB)})]
    wires = [Wire("input", "question"), Wire("input", "answer"), Wire("question", "encoder"),
             Wire("encoder", "decoder", 1), Wire("answer", "decoder", 0), Wire("decoder", "dense"),
             Wire("dense", "classify")]
    spec = GraphSpec(blocks, wires)
    positions = layered_positions(spec, {})
    x, y = positions["encoder"]
    positions["answer"] = (x, y - 110.0)      # above the encoder: its wire reaches the decoder's first port
    # The head on a second row, as layered_positions wraps longer models: six layers in one row
    # did not fit the Build view at 1280x800 even at the canvas's smallest fit.
    positions["dense"] = (x, y + LAYER_Y + 40.0)
    positions["classify"] = (x + LAYER_X, y + LAYER_Y + 40.0)
    return Project(
        name="addition-seq2seq",
        description="An encoder-decoder (unsynchronised many-to-many, seed 003): an LSTM reads a sum "
                    "written as characters, '123+45', and hands its final state (h and C) to a second "
                    "LSTM that writes the answer, '168', one character per step. Training feeds the "
                    "decoder the true answer shifted by one step (teacher forcing); at test time it "
                    "reads its own characters back, and `gatescope train --json` reports "
                    "test_sequence_accuracy, the share of held-out sums answered right in full.",
        graph=spec, positions=positions,
        training=TrainSettings(epochs=30, batch_size=64, optimizer="adam", learning_rate=3e-3, schedule="cosine",
                               clip_norm=5.0, seed=0, val_fraction=0.05, test_fraction=0.1),
        dataset={"kind": "builtin", "name": "addition",
                 "params": {"n": 20000, "digits": digits, "reverse_question": True, "seed": 0}})


EXAMPLES = {"adding-lstm": adding_lstm, "adding-rnn": adding_rnn, "digits-rows-lstm": digits_rows_lstm,
            "hello-lstm": hello_lstm, "text-lstm": text_lstm, "addition-seq2seq": addition_seq2seq}
