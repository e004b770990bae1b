"""Image data sets that install offline, as fixed train/test splits of grayscale uint8 images.

Each loader returns an `ImageDataset`: images of shape (n, height, width) with values 0-255, integer labels,
class names, and the Hub id and a one-line description for model cards. The splits never depend on a training
seed, so every architecture (ViT, CLIP, the VAE) and every run is scored on the same test images.
Nothing is downloaded at run time.
"""

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Seed and size of the digits split: fixed, so test accuracies of different runs compare.
SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image data set, split into train and test, with what a model card says about it."""

    name: str
    hub_id: str
    description: str
    class_names: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 8x8 digits (values 0-16), rescaled to 0-255; a stratified, seeded 80/20 split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    train_images, test_images, train_labels, test_labels = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=DIGITS_TEST_FRACTION,
        stratify=digits.target,
        random_state=SPLIT_SEED,
    )
    return ImageDataset(
        name="digits",
        hub_id="sklearn-docs/digits",
        description=(
            "scikit-learn's `load_digits()`: 1,797 8x8 grayscale hand-written digits (the test set of the UCI "
            f"Optical Recognition of Handwritten Digits data), split {1 - DIGITS_TEST_FRACTION:.0%} train / "
            f"{DIGITS_TEST_FRACTION:.0%} test, stratified by class (seed {SPLIT_SEED})"
        ),
        class_names=[str(c) for c in digits.target_names],
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
    )


def read_idx(path: Path, header_bytes: int) -> np.ndarray:
    """The uint8 payload of a gzipped IDX file, after its header."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header_bytes)


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> ImageDataset:
    """Zalando's Fashion-MNIST (60,000 train / 10,000 test 28x28 images, its own split), from the Debian package."""
    splits = {}
    for split in ("train", "t10k"):
        images_path, labels_path = root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"
        for path in (images_path, labels_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"Fashion-MNIST file {path} is missing: install the Debian package `{FASHION_MNIST_PACKAGE}` "
                    f"(`apt-get install {FASHION_MNIST_PACKAGE}`), or use `--dataset digits`."
                )
        # IDX: a 16-byte header (magic, count, rows, cols) before the images, 8 bytes (magic, count) before labels.
        images = read_idx(images_path, header_bytes=16).reshape(-1, 28, 28)
        splits[split] = images, read_idx(labels_path, header_bytes=8).astype(np.int64)
    return ImageDataset(
        name="fashion-mnist",
        hub_id="zalando-datasets/fashion_mnist",
        description=(
            "Zalando's Fashion-MNIST: 70,000 28x28 grayscale images of 10 kinds of clothing, "
            "its own split of 60,000 train / 10,000 test images"
        ),
        class_names=FASHION_MNIST_CLASSES,
        train_images=splits["train"][0],
        train_labels=splits["train"][1],
        test_images=splits["t10k"][0],
        test_labels=splits["t10k"][1],
    )


LOADERS = {"digits": load_digits, "fashion-mnist": load_fashion_mnist}


def load_image_dataset(name: str) -> ImageDataset:
    """The data set called `name` (a key of `LOADERS`)."""
    if name not in LOADERS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {sorted(LOADERS)}.")
    return LOADERS[name]()
