"""studio.wording: counts read with the right noun, durations as a person says them."""
from gatescope.studio.wording import article, format_duration, plural


def test_plural_takes_the_singular_for_one():
    assert plural(1, "epoch") == "1 epoch" and plural(2, "epoch") == "2 epochs"
    assert plural(0, "unit") == "0 units" and plural(12345, "sample") == "12,345 samples"
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == "3 classes"


def test_durations_and_articles():
    assert format_duration(75) == "1 min 15 s" and format_duration(4000) == "1 h 06 min"
    assert format_duration(0.4) == "0 s"
    assert article("image 1x8x8") == "an image 1x8x8" and article("sequence 100x2") == "a sequence 100x2"
