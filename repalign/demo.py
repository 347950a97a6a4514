"""The demo: the alignment matrix of a few representations of scikit-learn's digits.

Five representations of the same 1,797 images: the raw pixels, their leading principal
components, a random projection, a random ReLU layer, and a control whose rows are the pixels
of other images (aligned with nothing). Every pair is measured with every measure of
`repalign.measures`.
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from repalign import measures

SEED = 0

KERNEL_MEASURES = {
    "KA": measures.kernel_alignment,
    "CKA": measures.cka,
    "CKA song": lambda X, Y: measures.cka(X, Y, estimator="song"),
    "CKA lange": lambda X, Y: measures.cka(X, Y, estimator="lange"),
    "CKA rbf": lambda X, Y: measures.cka(X, Y, kernel="rbf"),
    "HSIC-u rbf": lambda X, Y: measures.hsic(X, Y, kernel="rbf", estimator="unbiased"),
}
GEOMETRY_MEASURES = {
    "Procrustes": measures.procrustes,
    "CCA": measures.cca,
    "SVCCA": measures.svcca,
    "mutual kNN": measures.mutual_knn,
    "CKNNA": measures.cknna,
    "dist. align.": measures.distance_alignment,
}


def digits_representations(seed=SEED):
    """Name → (1797, d) float32 array, all describing the same images in the same order."""
    pixels = load_digits().data.astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((64, 256)).astype(np.float32) / 8.0
    return {
        "pixels": pixels,
        "pca-16": PCA(16, random_state=seed).fit_transform(pixels).astype(np.float32),
        "random-projection-32": pixels @ rng.standard_normal((64, 32)).astype(np.float32),
        "random-relu-256": np.maximum(pixels @ weights + 0.1, 0.0),
        "shuffled-pixels": pixels[rng.permutation(len(pixels))],
    }


def alignment_table(representations, measure_set):
    """Rows of (name_a, name_b, {measure: value}) for every unordered pair a < b."""
    names = list(representations)
    return [
        (a, b, {m: f(representations[a], representations[b]) for m, f in measure_set.items()})
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]


def format_table(rows, title):
    measure_names = list(rows[0][2])
    left = max(len(f"{a} ~ {b}") for a, b, _ in rows)
    columns = [(m, max(len(m), 9)) for m in measure_names]
    header = " ".join([f"{'pair':<{left}}", *(f"{m:>{w}}" for m, w in columns)])
    lines = [title, header, "-" * len(header)]
    for a, b, values in rows:
        cells = (_format_value(values[m], w) for m, w in columns)
        lines.append(" ".join([f"{a + ' ~ ' + b:<{left}}", *cells]))
    return "\n".join(lines)


def _format_value(value, width):
    return f"{value:>{width}.4f}" if abs(value) < 1e4 else f"{value:>{width}.3g}"


def run():
    representations = digits_representations()
    n = len(next(iter(representations.values())))
    widths = ", ".join(f"{k} ({v.shape[1]})" for k, v in representations.items())
    print(f"repalign demo: scikit-learn digits, n = {n} images, representations: {widths}\n")
    print(format_table(alignment_table(representations, KERNEL_MEASURES), "Kernel measures"))
    print()
    print(format_table(alignment_table(representations, GEOMETRY_MEASURES), "Geometry measures"))
    print(
        "\nSimilarities lie in [0, 1] (unbiased ones may dip below 0); 'dist. align.' is a "
        "distance (0 = isometric).\nThe shuffled control pairs images with other images: "
        "its alignments show the floor of each measure."
    )
