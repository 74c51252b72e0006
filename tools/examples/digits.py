"""digits-cnn: a small conv/pool/dense network on the bundled 8x8 handwritten digits."""
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


EXAMPLES = {"digits-cnn": digits_cnn}
