"""load_file: npz, CSV and image folders; every kind of bad data gives a DataError that names it."""
import io
import os
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from gatescope.compute.datasets import DataError, load
from gatescope.compute.datasets.files import load_file


def save_npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_with_test_part(tmp_path):
    rng = np.random.default_rng(0)
    path = save_npz(tmp_path, x=rng.standard_normal((10, 1, 4, 4)), y=np.arange(10) % 3,
                    x_test=rng.standard_normal((4, 1, 4, 4)), y_test=np.array([0, 1, 2, 0]))
    data = load_file(path)
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.sample_shape == (1, 4, 4) and data.n_classes == 3 and len(data.x_test) == 4
    same = load({"kind": "file", "path": str(path)})
    np.testing.assert_array_equal(same.x, data.x)


def test_npz_regression(tmp_path):
    path = save_npz(tmp_path, x=np.ones((5, 3)), y=np.linspace(0, 1, 5))
    data = load_file(path, task="regression")
    assert data.task == "regression" and data.y.dtype == np.float32


@pytest.mark.parametrize("arrays,message", [
    ({"x": np.ones((5, 3)), "y": np.arange(4)}, "x has 5 samples but y has 4 labels"),
    ({"x": np.ones((4, 3)), "y": np.array([0, 1.5, 2, 0])}, "class labels must be whole numbers"),
    ({"x": np.ones((4, 3)), "y": np.array([0, -1, 2, 0])}, "class labels must be 0 or more; found -1"),
    ({"x": np.array([[1.0, np.nan], [1, 2]]), "y": np.array([0, 1])}, r"NaN or Inf values \(first in sample 0\)"),
    ({"x": np.array([[1.0, 2], [np.inf, 2]]), "y": np.array([0, 1])}, r"NaN or Inf values \(first in sample 1\)"),
    ({"x": np.ones((4, 3))}, "has no array named y"),
    ({"x": np.ones((4, 3)), "y": np.arange(4), "x_test": np.ones((2, 3))}, "only one of x_test and y_test"),
    ({"x": np.array(["a", "b"]), "y": np.arange(2)}, "samples must be real numbers"),
])
def test_npz_problems_are_named(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_file(save_npz(tmp_path, **arrays))


def test_ragged_object_arrays_are_never_unpickled(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1.0, 2.0], [1.0]
    with pytest.raises(DataError, match="object arrays"):
        load_file(save_npz(tmp_path, x=ragged, y=np.arange(2)))


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_file(tmp_path / "nothing.npz")
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"this is not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_file(fake)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(DataError, match="cannot read .npy files"):
        load_file(single)
    with pytest.raises(DataError, match="single array"):
        load_file(single, "npz")


def test_csv_with_header_and_label_column(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("label,a,b\n1,0.5,2\n0,1.5,3\n\n2,2.5,4\n")
    data = load_file(path, label_column=0)
    np.testing.assert_array_equal(data.y, [1, 0, 2])
    np.testing.assert_allclose(data.x, [[0.5, 2], [1.5, 3], [2.5, 4]])
    plain = tmp_path / "plain.csv"
    plain.write_text("0.5;2;1\n1.5;3;0\n")
    data = load_file(plain)
    np.testing.assert_array_equal(data.y, [1, 0])
    assert data.sample_shape == (2,)


@pytest.mark.parametrize("text,params,message", [
    ("1,2,0\n1,2\n", {}, "line 2: has 2 values but the first row has 3"),
    ("1,2,0\n1,x,1\n", {}, "line 2: '1,x,1' is not all numbers"),
    ("1,2,0.5\n1,2,1\n", {}, "class labels must be whole numbers"),
    ("1,nan,0\n1,2,1\n", {}, "NaN or Inf"),
    ("1,2,0\n", {"label_column": 5}, "label column 5 does not exist"),
    ("a,b\n", {}, "header but no rows"),
    ("", {}, "is empty"),
])
def test_csv_problems_are_named(tmp_path, text, params, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_file(path, **params)


def write_image(path, image):
    assert cv2.imwrite(str(path), image)


def make_folder(tmp_path, sizes=((6, 5), (6, 5)), colour=True):
    root = tmp_path / "pictures"
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            shape = (h, w, 3) if colour else (h, w)
            write_image(root / name / f"{i}.png", np.full(shape, 40 * (label + 1), np.uint8))
    return root


def test_image_folder_colour_and_grey(tmp_path):
    root = make_folder(tmp_path)
    red = np.zeros((6, 5, 3), np.uint8)
    red[:, :, 2] = 255  # BGR on disk
    write_image(root / "cat" / "red.png", red)
    data = load_file(root)
    assert data.x.shape == (5, 3, 6, 5) and data.x.dtype == np.float32
    assert data.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(data.y, [0, 0, 0, 1, 1])
    assert data.x.min() >= 0 and data.x.max() <= 1
    np.testing.assert_allclose(data.x[2, :, 0, 0], [1, 0, 0])  # red.png sorts last in cat: RGB order
    grey = load_file(make_folder(tmp_path / "g", colour=False))
    assert grey.x.shape == (4, 1, 6, 5)
    np.testing.assert_allclose(grey.x[0, 0, 0, 0], 40 / 255)


def test_mixed_sizes_need_resize(tmp_path):
    root = make_folder(tmp_path, sizes=((6, 5), (8, 8)))
    with pytest.raises(DataError, match=r"different sizes \(6x5, 8x8\); set 'Resize to'"):
        load_file(root)
    data = load_file(root, resize=(4, 4))
    assert data.x.shape == (4, 3, 4, 4)


def test_image_folder_problems(tmp_path):
    root = make_folder(tmp_path)
    (root / "bird").mkdir()
    with pytest.raises(DataError, match="class folder 'bird' holds no images"):
        load_file(root)
    (root / "bird" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read the image bird/broken.png"):
        load_file(root)
    lonely = tmp_path / "lonely"
    (lonely / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least two classes"):
        load_file(lonely)
    with pytest.raises(DataError, match="resize must be"):
        load_file(make_folder(tmp_path / "r"), resize="big")


def test_tables_separated_by_tabs_semicolons_or_spaces(tmp_path):
    rows = [[0.5, 2.0, 1], [1.5, 3.0, 0], [2.5, 4.0, 1]]
    for name, sep in (("t.tsv", "\t"), ("t.txt", "   "), ("semi.csv", ";")):
        path = tmp_path / name
        path.write_text("a{0}b{0}label\n".format(sep) + "".join(sep.join(str(v) for v in r) + "\n" for r in rows))
        data = load_file(path)
        np.testing.assert_allclose(data.x, [r[:2] for r in rows])
        np.testing.assert_array_equal(data.y, [1, 0, 1])


def test_labels_that_skip_numbers_are_numbered_with_their_values_as_names(tmp_path):
    path = tmp_path / "sparse.csv"
    path.write_text("7,0.1\n3,0.2\n7,0.3\n3,0.4\n")
    data = load_file(path, label_column=0)
    assert data.n_classes == 2 and data.class_names == ["3", "7"]
    np.testing.assert_array_equal(data.y, [1, 0, 1, 0])
    assert "the labels are 3, 7, not 0 to 1" in data.meta["warnings"][0]
    npz = save_npz(tmp_path, x=np.ones((4, 2)), y=np.array([1, 2, 2, 1]), x_test=np.ones((2, 2)),
                   y_test=np.array([3, 1]))
    data = load_file(npz)
    assert data.class_names == ["1", "2", "3"]
    np.testing.assert_array_equal(data.y_test, [2, 0])
    contiguous = load_file(save_npz(tmp_path, "ok.npz", x=np.ones((3, 2)), y=np.array([0, 1, 2])))
    assert contiguous.meta["warnings"] == []


def test_a_label_column_of_measurements_suggests_regression(tmp_path):
    path = tmp_path / "measured.csv"
    path.write_text("".join(f"{i * 0.5},{i}\n" for i in range(40)))
    data = load_file(path, label_column=-1)
    assert "choose Regression" in data.meta["warnings"][-1]
    assert load_file(path, task="regression").y.dtype == np.float32


def test_options_a_format_does_not_take_are_named(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("1,0\n2,1\n")
    with pytest.raises(DataError, match="has no option resize"):
        load_file(path, resize=[4, 4])
    with pytest.raises(DataError, match="label_column must be a whole number"):
        load_file(path, label_column="first")


def test_detect_format(tmp_path):
    from gatescope.compute.datasets.files import detect_format
    for name, kind in (("a.npz", "npz"), ("a.csv", "csv"), ("a.TSV", "csv"), ("a.txt", "csv")):
        (tmp_path / name).write_bytes(b"")
        assert detect_format(tmp_path / name) == kind
    (tmp_path / "pics" / "cat").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "pics" / "cat" / "a.png"), np.zeros((4, 4), np.uint8))
    assert detect_format(tmp_path / "pics") == "images"
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(DataError, match="cannot read .json files"):
        detect_format(tmp_path / "a.json")


def test_a_line_is_quoted_only_from_a_file_that_looks_like_data(tmp_path):
    """A table that gave rows of numbers shows the bad line; any other file is named, never echoed
    (a project pointing at /etc/shadow printed one of its lines)."""
    table = tmp_path / "t.csv"
    table.write_text("a,b,label\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match=r"t.csv, line 3: '3,x,1' is not all numbers"):
        load_file(table)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$HASH:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
    with pytest.raises(DataError) as refused:
        load_file(secret, "csv")
    assert str(refused.value) == "shadow, line 2: is not all numbers"
    unlabelled = tmp_path / "notes.csv"
    unlabelled.write_text("title\nsecret words here\n")
    with pytest.raises(DataError) as refused:
        load_file(unlabelled)
    assert "secret" not in str(refused.value), "no row of numbers yet: the file is not evidently data"


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null"])
def test_only_regular_files_are_read(special, tmp_path):
    path = tmp_path / "data.npz"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path = Path(special)
    with pytest.raises(DataError, match="not a regular file"):
        load_file(path, "npz")
    with pytest.raises(DataError, match="not a regular file"):     # with the format left to detection
        load_file(path)


def test_npz_members_are_sized_before_reading(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", header.getvalue() + bytes(16))
        z.writestr("y.npy", header.getvalue())
    with pytest.raises(DataError, match=r"array 'x', declares shape \(1000000, 1000000\) of float32, 4 TB"):
        load_file(tmp_path / "bomb.npz")
    with zipfile.ZipFile(tmp_path / "twice.npz", "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate made on purpose
        z.writestr("x.npy", b"")
        z.writestr("x.npy", b"")
    with pytest.raises(DataError, match="two members named 'x.npy'"):
        load_file(tmp_path / "twice.npz")

