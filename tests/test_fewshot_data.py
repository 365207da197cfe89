"""Few-shot data: MiniImageNet reader, config-driven splits and their one-line errors."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from test_supervised_omniglot import layout, make_zip

from metarl.cli import main
from metarl.config import ConfigError, load_config
from metarl.supervised.datasets import REPO_ROOT, load_classes, resolve_data_dir
from metarl.supervised.images import DataError
from metarl.supervised.miniimagenet import read_miniimagenet

COLOURS = {"n01": (250, 10, 10), "n02": (10, 250, 10), "n03": (10, 10, 250)}


def jpeg(colour, size=(100, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_miniimagenet(root, per_class=4, splits=("train", "val", "test")):
    """Ravi & Larochelle's layout: images/ and one csv per split (here 3 classes in each)."""
    (root / "images").mkdir(parents=True)
    for split in splits:
        lines = ["filename,label"]
        for label, colour in COLOURS.items():
            for i in range(per_class):
                name = f"{label}{split}{i:08d}.jpg"
                (root / "images" / name).write_bytes(jpeg(colour))
                lines.append(f"{name},{label}")
        (root / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_miniimagenet_reads_resized_rgb_classes(tmp_path):
    classes = read_miniimagenet(make_miniimagenet(tmp_path), "train", image_size=16)
    assert classes.names == ["n01", "n02", "n03"]
    assert classes.images.shape == (3, 4, 3, 16, 16) and classes.images.dtype == torch.uint8
    # Each class keeps its colour through JPEG and resizing: red, green, blue channel first.
    means = classes.images.float().mean(dim=(1, 3, 4))
    assert torch.equal(means.argmax(dim=1), torch.tensor([0, 1, 2]))


def test_miniimagenet_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'images'} is not a folder"):
        read_miniimagenet(tmp_path, "train")
    root = make_miniimagenet(tmp_path / "m", splits=("train",))
    with pytest.raises(DataError, match="split file not found: .*test.csv"):
        read_miniimagenet(root, "test")
    (root / "val.csv").write_text("file,class\na.jpg,n01\n")
    with pytest.raises(DataError, match="val.csv: expected the header 'filename,label'"):
        read_miniimagenet(root, "val")
    (root / "images" / "n02train00000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="unreadable image .*n02train00000001.jpg"):
        read_miniimagenet(root, "train", image_size=8)
    (root / "images" / "n02train00000001.jpg").unlink()
    with pytest.raises(DataError, match="image missing or unreadable: .*n02train00000001.jpg"):
        read_miniimagenet(root, "train", image_size=8)
    with open(root / "train.csv", "a") as f:
        f.write("extra.jpg,n01\n")
    with pytest.raises(DataError, match="different numbers of images"):
        read_miniimagenet(root, "train", image_size=8)


def test_miniimagenet_config_loads_train_and_eval_split(tmp_path):
    root = make_miniimagenet(tmp_path)
    config = load_config(data={"kind": "fewshot", "dataset": "miniimagenet", "data_dir": str(root),
                               "image_size": 8, "ways": 3, "query_shots": 3})
    assert config.architecture() == {"image_size": 8, "filters": 32, "pool": True,
                                     "rotations": False}
    assert load_classes(config, "eval").images.shape == (3, 4, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"'shots' \+ 'query_shots' = 5 exceed the 4"):
        load_classes(load_config(data={**config.__dict__, "query_shots": 4}), "train")
    with pytest.raises(ConfigError, match="'rotations': the rotation augmentation is for Omniglot"):
        load_config(data={"kind": "fewshot", "dataset": "miniimagenet", "rotations": True})


def omniglot_config(root, **over):
    return load_config(data={"kind": "fewshot", "data_dir": str(root), "archives": ["a"],
                             "test_alphabets": ["Latin"], **over})


def test_omniglot_config_splits_rotated_classes_without_mixing(tmp_path):
    make_zip(tmp_path / "a.zip", ["Greek", "Latin", "Korean"], characters=2)
    config = omniglot_config(tmp_path)
    train, test = load_classes(config, "train"), load_classes(config, "eval")
    assert len(train.names) == 4 * 4 and len(test.names) == 2 * 4
    base = lambda names: {n.split("@")[0] for n in names}
    assert base(train.names).isdisjoint(base(test.names))
    assert {n.split("/")[0] for n in test.names} == {"Latin"}
    # By number of characters: the same seed gives the same split.
    by_count = omniglot_config(tmp_path, test_alphabets=[], train_characters=4, rotations=False,
                               ways=2)
    first, again = load_classes(by_count, "eval"), load_classes(by_count, "eval")
    assert first.names == again.names and len(first.names) == 2
    assert set(first.names).isdisjoint(load_classes(by_count, "train").names)
    # Fewer training characters with held-out alphabets: a fixed random subset of the others.
    fewer = omniglot_config(tmp_path, train_characters=3, rotations=False, ways=2)
    few_train = load_classes(fewer, "train").names
    assert len(few_train) == 3 and set(few_train) < set(base(train.names))
    assert load_classes(fewer, "train").names == few_train  # the seed fixes the subset
    assert load_classes(fewer, "eval").names == load_classes(
        omniglot_config(tmp_path, rotations=False, ways=2), "eval").names
    assert any(load_classes(omniglot_config(tmp_path, train_characters=3, rotations=False,
                                            ways=2, seed=seed), "train").names != few_train
               for seed in range(1, 6))  # drawn from the run's seed
    assert load_classes(omniglot_config(tmp_path, train_characters=4), "train").names \
        == train.names  # as many as there are: all, as before
    # Mirrored training characters: twice the training classes, held-out ones unchanged.
    mirrored = omniglot_config(tmp_path, mirror_training_characters=True)
    assert len(load_classes(mirrored, "train").names) == 2 * 4 * 4
    assert load_classes(mirrored, "eval").names == test.names
    with pytest.raises(ConfigError, match="'mirror_training_characters' is for Omniglot"):
        load_config(data={"kind": "fewshot", "dataset": "miniimagenet",
                          "mirror_training_characters": True})


def test_omniglot_data_errors_are_one_line_and_name_the_path(tmp_path):
    with pytest.raises(DataError, match=f"data_dir not found: {tmp_path / 'nowhere'}"):
        load_classes(omniglot_config(tmp_path / "nowhere"), "train")
    with pytest.raises(DataError, match=f"archive a not found in {tmp_path}"):
        load_classes(omniglot_config(tmp_path), "train")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("wrong layout")
    with pytest.raises(DataError, match=f"{tmp_path / 'a'}: no PNG images in the Omniglot"):
        load_classes(omniglot_config(tmp_path), "train")
    make_zip(tmp_path / "b.zip", ["Greek", "Latin"], characters=2)
    with pytest.raises(ConfigError, match=r"'test_alphabets': \['Tagalog'\] not in the data"):
        load_classes(omniglot_config(tmp_path, archives=["b"], test_alphabets=["Tagalog"]),
                     "train")
    with pytest.raises(ConfigError, match="'ways': 20-way tasks need 20 classes, the eval set"):
        load_classes(omniglot_config(tmp_path, archives=["b"], ways=20), "eval")


def test_relative_data_dir_falls_back_to_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("metarl") == REPO_ROOT / "metarl"
    (tmp_path / "metarl").mkdir()
    assert resolve_data_dir("metarl").resolve() == tmp_path / "metarl"


def test_cli_missing_data_is_one_line_before_any_run_dir(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"kind: fewshot\ndata_dir: {tmp_path / 'absent'}\n")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metarl: error: data_dir not found:") and "\n" not in err
    assert str(tmp_path / "absent") in err and not (tmp_path / "run").exists()


def test_corrupt_omniglot_image_stops_training_in_one_line(tmp_path, capsys):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        for name, data in layout(["Greek", "Latin"], characters=1):
            archive.writestr(name, b"broken" if name.endswith("101_05.png") else data)
    config = tmp_path / "c.yaml"
    config.write_text(f"kind: fewshot\ndata_dir: {tmp_path}\narchives: [a]\n"
                      "test_alphabets: [Latin]\n")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("metarl: error: unreadable image Latin/character01/101_05.png in "
                   f"{tmp_path / 'a.zip'} (UnidentifiedImageError)")
    assert not (tmp_path / "run").exists()


def test_shipped_paths_resolve_from_the_repository_root():
    config = load_config(REPO_ROOT / "experiments" / "configs" / "omniglot-small-5w1s.yaml")
    assert config.data_dir == "../shared/data/omniglot"
    if (REPO_ROOT.parent / "shared" / "data" / "omniglot").is_dir():
        assert resolve_data_dir(config.data_dir).samefile(REPO_ROOT.parent / "shared" / "data"
                                                          / "omniglot")
    assert np.isclose(config.inner_lr, 0.4)


def test_fewshot_config_keys_are_strict():
    with pytest.raises(ConfigError, match=r"unknown config key 'wayz' \(did you mean 'ways'"):
        load_config(data={"kind": "fewshot", "wayz": 5})
    with pytest.raises(ConfigError,
                       match="'adapt': expected one of 'grouped', 'vmap', 'loop', got 'batch'"):
        load_config(data={"kind": "fewshot", "adapt": "batch"})
    with pytest.raises(ConfigError, match="'grad_checkpointing': expected true or false"):
        load_config(data={"kind": "fewshot", "grad_checkpointing": "yes"})


@pytest.mark.parametrize("name,settings", [
    # ways, shots, query, meta-batch, inner lr, train steps, test steps, filters, pool
    ("omniglot-5w1s", (5, 1, 1, 32, 0.4, 1, 3, None, None)),
    ("omniglot-5w5s", (5, 5, 5, 32, 0.4, 1, 3, None, None)),
    ("omniglot-20w1s", (20, 1, 1, 16, 0.1, 5, 5, None, None)),
    ("omniglot-20w5s", (20, 5, 5, 16, 0.1, 5, 5, None, None)),
    ("omniglot-small-5w1s", (5, 1, 1, 32, 0.4, 1, 3, None, None)),
    ("omniglot-small-20w1s", (20, 1, 1, 16, 0.1, 5, 5, None, None)),
    ("miniimagenet-5w1s", (5, 1, 15, 4, 0.01, 5, 10, 32, True)),
    ("miniimagenet-5w5s", (5, 5, 15, 2, 0.01, 5, 10, 32, True)),
])
def test_shipped_fewshot_configs_have_the_papers_settings(name, settings):
    c = load_config(REPO_ROOT / "experiments" / "configs" / f"{name}.yaml")
    arch = c.architecture()
    got = (c.ways, c.shots, c.query_shots, c.meta_batch_size, c.inner_lr, c.inner_steps,
           c.eval_inner_steps, arch["filters"] if c.dataset == "miniimagenet" else None,
           arch["pool"] if c.dataset == "miniimagenet" else None)
    assert got == settings
    assert (c.outer_lr, c.iterations, c.threads) == (0.001, 60000, 1)
    if c.dataset == "omniglot":
        assert (arch["filters"], arch["pool"], arch["rotations"]) == (64, False, True)
        assert c.train_characters == 1200 or c.test_alphabets == ["Japanese_(katakana)",
                                                                    "Sanskrit", "Tagalog"]
