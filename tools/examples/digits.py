"""digits-cnn: a small conv/pool/dense network on the bundled 8x8 handwritten digits; digits-spell-lstm:
the same digits, each spelled out by an LSTM decoder (one-to-many)."""
from gatescope.compute.graph import Block, GraphSpec, Wire
from gatescope.compute.train import TrainSettings
from gatescope.studio.layout import layered_positions
from gatescope.studio.project import Project


def chain_project(name: str, description: str, blocks: list[tuple[str, dict]], training: TrainSettings,
                  dataset: dict) -> Project:
    """A project whose blocks form one chain, laid out left to right on the canvas (a long
    chain wraps onto rows of five, as Auto Layout does)."""
    spec = GraphSpec([Block(f"{t.lower()}{i}", t, dict(s)) for i, (t, s) in enumerate(blocks)])
    spec.wires = [Wire(a.id, b.id) for a, b in zip(spec.blocks, spec.blocks[1:])]
    positions = layered_positions(spec, {})
    return Project(name=name, description=description, graph=spec, positions=positions, training=training,
                   dataset=dataset)


def digits_cnn() -> Project:
    return chain_project(
        "digits-cnn",
        "A small CNN on the UCI 8x8 handwritten digits: two 3x3 convolutions, max pooling, a dense "
        "head. Reaches about 97-98% test accuracy in a few seconds of CPU training.",
        [("Input", {"shape": (1, 8, 8)}),
         ("Conv2D", {"filters": 16, "kernel_size": 3, "padding": "same"}),
         ("ReLU", {}),
         ("Conv2D", {"filters": 32, "kernel_size": 3, "padding": "same"}),
         ("ReLU", {}),
         ("MaxPool2D", {"size": 2}),
         ("Flatten", {}),
         ("Dense", {"units": 64}),
         ("ReLU", {}),
         ("Dense", {"units": 10}),
         ("Classify", {})],
        TrainSettings(epochs=15, batch_size=32, optimizer="adam", learning_rate=2e-3, seed=0,
                      val_fraction=0.1, test_fraction=0.2),
        {"kind": "builtin", "name": "digits", "params": {"layout": "image"}})



def digits_spell_lstm() -> Project:
    """Input image -> Conv2D -> Flatten -> Dense --state--> LSTM decoder <- RepeatSteps(Dense) -> Dense -> Classify."""
    from gatescope.compute.datasets.digits import digit_names
    letters = digit_names().class_names
    hidden = 64
    blocks = [Block("input", "Input", {"shape": (1, 8, 8)}),
              Block("conv", "Conv2D", {"filters": 16, "kernel_size": 3, "padding": "same"}), Block("relu", "ReLU", {}),
              Block("flatten", "Flatten", {}), Block("features", "Dense", {"units": hidden}),
              Block("tanh", "Tanh", {}), Block("repeat", "RepeatSteps", {"steps": 6}),
              Block("decoder", "LSTM", {"hidden_size": hidden, "return_sequences": True}),
              Block("letters", "Dense", {"units": len(letters)}),
              Block("classify", "Classify", {"class_names": ",".join(letters)})]
    chain = ["input", "conv", "relu", "flatten", "features", "tanh", "repeat"]
    wires = [Wire(a, b) for a, b in zip(chain, chain[1:])]
    wires += [Wire("repeat", "decoder", 0), Wire("tanh", "decoder", 1), Wire("decoder", "letters"),
              Wire("letters", "classify")]
    spec = GraphSpec(blocks, wires)
    return Project(
        name="digits-spell-lstm",
        description="One-to-many, as image captioning is (seed 001): a small CNN reads one 8x8 digit, its "
                    "features start an LSTM decoder's state (a state wire from the Tanh) and are repeated at "
                    "each of its 6 steps, and the decoder spells the digit's name, one letter per step: "
                    "'seven.' for a 7.",
        graph=spec, positions=layered_positions(spec, {}),
        training=TrainSettings(epochs=25, batch_size=32, optimizer="adam", learning_rate=3e-3, seed=0,
                               val_fraction=0.1, test_fraction=0.2),
        dataset={"kind": "builtin", "name": "digit_names", "params": {}})


EXAMPLES = {"digits-cnn": digits_cnn, "digits-spell-lstm": digits_spell_lstm}
