"""``res2net predict`` with the ``paddleclas`` command's flags, printing its output lines."""

import re

import pytest
import torch

import res2net
from res2net.cli import main
from res2net.cli.paddleclas import str2bool
from tests.utils import randomize_

LINE = re.compile(r"^class_ids: \[[\d, ]+\], scores: \[[\d.e, -]+\], label_names: \[.*\], filename: (.+)$")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    res2net.save_pretrained(randomize_(res2net.create_model("res2net_tiny", num_classes=4)), folder / "tiny")
    labels = folder / "labels.txt"
    labels.write_text("0 zero\n1 one\n2 two\n3 three\n")
    return folder / "tiny", labels


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "coffee.jpg"
    Image.fromarray(data.coffee()).save(path)
    return path


def test_paddleclas_flags_and_output_lines(weights, photo, capsys, caplog):
    folder, labels = weights
    caplog.set_level("INFO", logger="res2net.predict")
    rc = main(["predict", "--model_name", "res2net_tiny", "--weights", str(folder), "--infer_imgs", str(photo),
               "--batch_size", "1", "--topk", "2", "--class_id_map_file", str(labels), "--resize_short", "96",
               "--crop_size", "64", "--cpu_num_threads", "1", "--use_gpu=False", "--enable_mkldnn", "True",
               "--use_tensorrt", "False", "--engine", "torch", "--no-check"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "Predict complete!"
    match = LINE.match(out[0])
    assert match and match.group(1) == str(photo), out[0]
    assert re.search(r"label_names: \['(zero|one|two|three)', '(zero|one|two|three)'\]", out[0])
    assert "--use_gpu=False -> --device cpu" in caplog.text and "--enable_mkldnn=True: no effect" in caplog.text
    # same answer as our own spelling, which keeps our output format
    rc = main(["predict", str(photo), "--model", "res2net_tiny", "--weights", str(folder), "--topk", "2",
               "--labels", str(labels), "--resize-short", "96", "--crop-size", "64", "--engine", "torch",
               "--no-check"])  # fmt: skip
    ours = capsys.readouterr().out.strip().splitlines()
    assert len(ours) == 1 and "class id(s):" in ours[0] and "Predict complete!" not in ours
    ids = re.search(r"class_ids: (\[[\d, ]+\])", out[0]).group(1)
    assert re.search(r"class id\(s\): (\[[\d, ]+\])", ours[0]).group(1) == ids


def test_str2bool():
    assert str2bool("True") and str2bool("1") and not str2bool("false") and not str2bool("N")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")
