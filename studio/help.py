"""What Help shows: a short getting-started page (F1) and the list of keyboard shortcuts, and the
descriptions File > Open Example shows beside each example.

The shortcut list is read from the window's own actions, so it never drifts from what the keys
do. No Qt widgets here: the window shows the HTML in a dialog (``studio.dialogs``).
"""
from __future__ import annotations

import html
import json
import logging
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

GETTING_STARTED = """
<h2>Getting started with GateScope</h2>
<p>GateScope is arranged in five views; the buttons at the top left (or Ctrl+1 to Ctrl+5) switch
between them. Everything you change is kept in one project file (File &gt; Save).</p>
<ol>
<li><b>Build</b> (Ctrl+1): drag blocks from the palette onto the canvas and wire an output port (right
side of a block) to an input port (left side). Every block shows its output shape and parameter count;
a block that cannot work turns red and says why. Click a block to change its settings in the
inspector, which also shows the arithmetic: <i>floor((8 + 2x1 - 3) / 1) + 1 = 8</i> for a
convolution's output size, <i>4 x 64 x (2 + 64 + 1)</i> for an LSTM's parameters.</li>
<li><b>Train</b> (Ctrl+2): choose the data in the Data panel (a bundled set or your own file), set the
epochs, batch size and learning rate in the Training panel, and press <b>Train</b> (F5). The loss and
accuracy curves grow as it learns; the confusion matrix shows which classes it mixes up (click a cell
to see those samples). Pause, Resume and Stop are beside Train in every view.</li>
<li><b>Inside</b> (Ctrl+3): look inside a recurrent block while it learns: how far each gate of an LSTM
(<i>i, f, g, o</i>) or a GRU (<i>r, z, n</i>) is open at every time step, the cell state C_t, and the
gradient ||dL/dh_t|| reaching each step (a plain RNN's vanishes, an LSTM's does not). Pin a gate to 0 or
1 in the inspector (Build view) to test what the lectures ask, say forget = 1 and input = 0. A
convolution block shows its filters and feature maps.</li>
<li><b>Video</b> (Ctrl+4): open a webcam or a video file and watch a trained model classify it live.</li>
<li><b>Compare</b> (Ctrl+5): train variants of the model side by side on the same batches, say its LSTM
block as a SimpleRNN, an LSTM and a GRU, or one setting at several values, and watch their curves,
gradients through time and gates together; the table of final metrics opens any variant as a project of
its own. The run history below it keeps every training run of the project.</li>
</ol>
<p>To start, open an example (File &gt; Open Example): <i>digits-cnn</i> trains in seconds;
<i>adding-lstm</i> and <i>adding-rnn</i> show the vanishing gradient; <i>hello-lstm</i> is the
lectures' "hello"; <i>adding-rnn-lstm-gru</i>, <i>digits-rows-gated</i> and <i>exploding-relu-rnn</i>
make their comparison from one press of Compare.</p>
<p>The command line does the same without a window: <code>gatescope train PROJECT</code>,
<code>gatescope compare PROJECT</code>, <code>gatescope predict</code>, <code>gatescope export</code>;
<code>gatescope --help</code> lists them.</p>
"""


def shortcuts_html(actions) -> str:
    """A table of every action with a key: its menu text (without the ``&``) and its keys."""
    rows = []
    seen = set()
    for action in actions:
        keys = [k.toString() for k in action.shortcuts() if not k.isEmpty()]
        text = action.text().replace("&", "").rstrip("…").strip()
        if not keys or not text or (text, tuple(keys)) in seen:
            continue
        seen.add((text, tuple(keys)))
        rows.append(f"<tr><td>{html.escape(text)}</td><td><b>{html.escape(', '.join(keys))}</b></td></tr>")
    extra = [("Pan the canvas", "Space + drag, or the middle mouse button"),
             ("Zoom the canvas", "Mouse wheel"),
             ("Select several blocks", "Drag a rectangle on the canvas")]
    rows += [f"<tr><td>{a}</td><td><b>{b}</b></td></tr>" for a, b in extra]
    return ("<h2>Keyboard shortcuts</h2><table cellspacing='6'>"
            + "".join(rows) + "</table>")


def example_description(path: str | Path) -> str:
    """The description an example project carries (its ``project.json``), or '' when it has none
    or cannot be read. Only that one member is read, nothing is run."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("project.json")
            if info.file_size > 1_000_000:
                return ""
            description = json.loads(archive.read(info)).get("description", "")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, RuntimeError, NotImplementedError):
        log.warning("no description in %s", path)
        return ""
    return description if isinstance(description, str) else ""


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (what a menu entry shows beside an example's name)."""
    return text.split(". ")[0].strip().rstrip(".")
