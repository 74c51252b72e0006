"""Embedding: token ids to learned vectors (a lookup table, seed 004's word vectors)."""
from __future__ import annotations

from gatescope.compute.backend import get_array_module
from gatescope.compute.layers import register
from gatescope.compute.layers.base import Layer, Setting, SettingsError, ShapeError, describe_shape, with_article
from gatescope.compute.ops import embedding as embedding_ops


@register
class Embedding(Layer):
    """Row ``id`` of a learned table ``W`` (vocabulary, dimension) for every token id.

    Fed a vector of T ids per sample (the Input's shape ``(T,)``; ids are whole numbers stored
    as floats, as every dataset stores ``x``), it gives a sequence ``(T, D)``: what a one-hot
    vector times a Dense weight matrix gives, without the matrix product. Backward adds each
    step's gradient into the row its id chose (``compute.ops.embedding``); ids get no gradient.
    With a padding id, that row starts at zero and never gets a gradient, so padded steps
    always read zeros.
    """

    type_name = "Embedding"
    category = "Dense"
    summary = "Turns each token id (a word's or character's number) into a learned vector."
    settings_spec = (
        Setting("vocabulary", "int", 64, "Vocabulary size",
                "How many different tokens there are; ids run from 0 to this minus 1.", 1, 1_000_000),
        Setting("dimension", "int", 16, "Dimension", "How many numbers describe each token.", 1, 4096),
        Setting("padding_id", "int", -1, "Padding id",
                "The id that marks padding: its vector stays zero and never learns. -1 for none.",
                -1, 999_999),
    )

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.settings["padding_id"] >= self.settings["vocabulary"]:
            raise SettingsError(f"Padding id {self.settings['padding_id']} is outside the vocabulary of "
                                f"{self.settings['vocabulary']} (ids 0 to {self.settings['vocabulary'] - 1}); "
                                "use an id inside it, or -1 for none")

    def output_shape(self, in_shapes):
        shape = tuple(in_shapes[0])
        if len(shape) != 1:
            hint = (" (one-hot characters are already vectors: feed them to a Dense, Conv1D or recurrent "
                    "block instead, or give the dataset one id per step)" if len(shape) == 2 else "")
            raise ShapeError(f"Embedding reads one token id per step, a vector of T ids per sample, but is "
                             f"fed {with_article(describe_shape(shape))}{hint}")
        return (shape[0], self.settings["dimension"])

    def param_shapes(self, in_shapes):
        return {"W": (self.settings["vocabulary"], self.settings["dimension"])}

    def param_formula(self, in_shapes):
        v, d = self.settings["vocabulary"], self.settings["dimension"]
        return f"{v} x {d} = {v * d:,}"

    def initial_params(self, in_shapes, rng):
        v, d = self.settings["vocabulary"], self.settings["dimension"]
        # N(0, 1), PyTorch's default: unit-variance inputs, what the He/Glorot inits after it assume
        weight = rng.standard_normal((v, d))
        if self.settings["padding_id"] >= 0:
            weight[self.settings["padding_id"]] = 0.0
        return {"W": weight}

    def input_problem(self, x) -> str | None:
        """Why the batch ``x`` of ids cannot be looked up (see ``compute.ops.embedding.id_problem``)."""
        return embedding_ops.id_problem(x, self.settings["vocabulary"])

    def forward(self, inputs, training):
        x = inputs[0]
        problem = self.input_problem(x)
        if problem:
            raise ValueError(f"Embedding: {problem}")
        xp = get_array_module(x)
        self._ids = x.astype(xp.int64).reshape(-1)
        self._x_shape = x.shape
        weight = self.params["W"]
        return weight[self._ids].reshape(x.shape + (weight.shape[1],))

    def backward(self, grad_output):
        d = self.params["W"].shape[1]
        embedding_ops.embedding_backward(self._ids, grad_output.reshape(-1, d), self.grads["W"],
                                         self.settings["padding_id"])
        return [get_array_module(grad_output).zeros(self._x_shape, dtype=grad_output.dtype)]
