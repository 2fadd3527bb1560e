"""The study's own reported figures (docs/study.md: one unseeded run each, shown beside MNIST
results only), and the names of the datasets the report runs on.
"""

from __future__ import annotations

import math

import pandas as pd

# The datasets the report runs on: display name and class names (labels 0-9).
DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# What each dataset is, after its name in a sentence.
DESCRIPTIONS = {
    "mnist": "handwritten digits 0–9 (the study's dataset)",
    "fashion-mnist": (
        "Zalando's images of clothing, shoes and bags in 10 classes, a drop-in replacement"
        " for MNIST of the same format and size"
    ),
}
CLASS_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": tuple(
        "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
    ),
}
# The study ran on MNIST: its reported figures below are shown only beside MNIST results.
STUDY_DATASET = "mnist"

# The study's reported figures (one unseeded run each; docs/study.md, "What it reported").
STUDY_TASK2 = pd.DataFrame(
    {
        "iteration": [0, 200, 800, 999],
        "train_loss": [0.4953, 0.331, 0.2541, 0.2462],
        "train_acc": [0.365, math.nan, math.nan, 0.8129],
        "test_acc": [0.369, 0.775, 0.816, 0.8214],
    }
)
# Test accuracy at iteration 800 per (lr, batch size), as the study wrote it.
STUDY_GRID_TEST_800 = {
    (lr, batch_size): text
    for lr, texts in (
        (0.1, ("diverged",) * 4),
        (0.01, ("68-74 % (noisy)", "85.3 %", "85.3 %", "85.5 %")),
        (0.001, ("80.3 %", "81.4 %", "81.6 %", "81.7 %")),
    )
    for batch_size, text in zip((1, 10, 100, 1000), texts, strict=True)
}
# The best learning rate per batch size the study claimed (picked on the test accuracy).
STUDY_BEST_LR = {1: 0.001, 10: 0.01, 100: 0.01, 1000: 0.01}
# Wall time of one 1,000-iteration run evaluated after every iteration.
STUDY_SECONDS_PER_RUN = 350.0
# N' -> (train accuracy on S', test accuracy) at iteration 400.
STUDY_SUBSET_400 = {
    100: (0.93, 0.668),
    500: (0.814, 0.778),
    1000: (0.782, 0.743),
    10000: (0.784, 0.792),
}
# The study's three learning rates (docs/study.md, Task 3).
STUDY_LRS = (0.1, 0.01, 0.001)


def check_dataset(dataset: str) -> str:
    """``dataset`` if the report knows it, else a ValueError naming the known ones."""
    if dataset not in DATASET_NAMES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_NAMES)}, got {dataset!r}")
    return dataset


def dataset_name(dataset: str) -> str:
    """The display name of a dataset, e.g. "Fashion-MNIST" for ``"fashion-mnist"``."""
    return DATASET_NAMES[check_dataset(dataset)]


def is_study_dataset(dataset: str) -> bool:
    """True for the study's own dataset (MNIST): only then are its reported figures shown."""
    return check_dataset(dataset) == STUDY_DATASET


def label_text(dataset: str, label: int) -> str:
    """A label as shown in titles: "2" for MNIST, "2: Pullover" for Fashion-MNIST."""
    names = CLASS_NAMES[check_dataset(dataset)]
    if not 0 <= int(label) < len(names):
        raise ValueError(f"label must be in [0, {len(names) - 1}], got {label!r}")
    name = names[int(label)]
    return name if name == str(label) else f"{label}: {name}"
