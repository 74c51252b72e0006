"""Seed 004's CNN for text on the word-order task, and the bag-of-words baseline it is measured
against (same data, same training)."""
from gatescope.compute.graph import Block, GraphSpec, Wire
from gatescope.compute.train import TrainSettings
from gatescope.studio.layout import layered_positions
from gatescope.studio.project import Project
from tools.examples.digits import chain_project

WORDS, VOCABULARY, DIMENSION, FILTERS = 12, 1000, 32, 32
DATASET = {"kind": "builtin", "name": "word_order",
           "params": {"words": WORDS, "vocabulary": VOCABULARY, "stride": 3, "seed": 0}}
TRAINING = TrainSettings(epochs=15, batch_size=64, optimizer="adam", learning_rate=2e-3, seed=0,
                         val_fraction=0.1, test_fraction=0.0)
CLASSES = "shuffled,in order"


def text_cnn() -> Project:
    """Embedding -> Conv1D of widths 2, 3, 4 side by side -> max over time each -> Concat -> Dense -> Classify."""
    blocks = [Block("input", "Input", {"shape": (WORDS,)}),
              Block("embedding", "Embedding", {"vocabulary": VOCABULARY, "dimension": DIMENSION})]
    wires = [Wire("input", "embedding")]
    for port, width in enumerate((2, 3, 4)):
        conv, relu, pool = f"conv{width}", f"relu{width}", f"maxpool{width}"
        blocks += [Block(conv, "Conv1D", {"filters": FILTERS, "kernel_size": width}), Block(relu, "ReLU", {}),
                   Block(pool, "GlobalMaxPool1D", {})]
        wires += [Wire("embedding", conv), Wire(conv, relu), Wire(relu, pool), Wire(pool, "concat", port)]
    blocks += [Block("concat", "Concat", {}), Block("dropout", "Dropout", {"rate": 0.5}),
               Block("dense", "Dense", {"units": 2}), Block("classify", "Classify", {"class_names": CLASSES})]
    wires += [Wire("concat", "dropout"), Wire("dropout", "dense"), Wire("dense", "classify")]
    spec = GraphSpec(blocks, wires)
    return Project(
        name="text-cnn",
        description="Seed 004's CNN for text: word vectors (Embedding), 1-D filters over 2, 3 and 4 "
                    "neighbouring words side by side, the largest response of each filter over the run "
                    "(max over time), joined and classified. The task: is a run of 12 words from Alice in "
                    "Wonderland in the book's order, or the same words shuffled? Both classes hold the same "
                    "bags of words, so only word order tells them apart; compare with text-bag-of-words.",
        graph=spec, positions=layered_positions(spec, {}), training=TRAINING, dataset=DATASET)


def text_bag_of_words() -> Project:
    return chain_project(
        "text-bag-of-words",
        "The baseline for text-cnn: the same word vectors averaged over the run (a bag of words, "
        "blind to order), then Dense. On the word-order task it stays at 50%, chance, because in- "
        "order and shuffled runs hold exactly the same words. (Its validation accuracy falls below 50%: "
        "each validation run's twin, the same words with the other label, is among the training runs. The "
        "test runs, from the end of the book, give the honest figure.)",
        [("Input", {"shape": (WORDS,)}), ("Embedding", {"vocabulary": VOCABULARY, "dimension": DIMENSION}),
         ("GlobalAvgPool", {}), ("Dense", {"units": 32}), ("ReLU", {}), ("Dense", {"units": 2}),
         ("Classify", {"class_names": CLASSES})],
        TRAINING, DATASET)


EXAMPLES = {"text-cnn": text_cnn, "text-bag-of-words": text_bag_of_words}
