"""Published results, beside which mnistlab's benchmark rows are shown (test accuracy, as a fraction)."""

from __future__ import annotations

LECUN = "LeCun et al., MNIST page table"

# (dataset, model) -> list of (description, accuracy, source)
REFERENCES: dict[tuple[str, str], list[tuple[str, float, str]]] = {
    ("mnist", "logreg"): [("linear classifier (1-layer NN), 12.0% error", 0.880, LECUN)],
    ("mnist", "linear-svm"): [("linear classifier (1-layer NN), 12.0% error", 0.880, LECUN)],
    ("mnist", "knn"): [("k-NN Euclidean (L2), 5.0% error", 0.950, LECUN), ("k-NN Euclidean (L2), 3.09% error", 0.9691, LECUN)],
    ("mnist", "rbf-svm"): [("SVM Gaussian kernel, 1.4% error", 0.986, LECUN)],
    ("mnist", "rbf-svm-approx"): [("SVM Gaussian kernel, 1.4% error", 0.986, LECUN)],
    ("mnist", "mlp-300"): [("2-layer NN, 300 hidden units, 4.7% error", 0.953, LECUN)],
    ("mnist", "mlp"): [("the guides' dense net: 'about 98%'", 0.98, "TensorFlow/Keras guides")],
    ("mnist", "cnn"): [("the guides' CNN: 'over 99%'", 0.99, "Keras guides"),
                       ("the guides' Keras CNN measured here: 98.8% after 5 epochs", 0.988, "measured on this machine")],
    ("mnist", "lenet5"): [("LeNet-5, 0.95% error", 0.9905, LECUN)],
    ("mnist", "cnn-bn"): [("best published single model", 0.9983, "published state of the art")],
    ("mnist", "resnet"): [("best published single model", 0.9983, "published state of the art")],
    ("mnist", "ensemble"): [("boosted LeNet-4, 0.7% error", 0.993, LECUN), ("best published ensemble", 0.9987, "published state of the art")],
    ("fashion-mnist", "rbf-svm"): [("SVC C=10 RBF (best classical)", 0.897, "Zalando's scikit-learn benchmark")],
    ("fashion-mnist", "rbf-svm-approx"): [("SVC C=10 RBF (best classical)", 0.897, "Zalando's scikit-learn benchmark")],
    ("fashion-mnist", "mlp"): [("MLPClassifier", 0.870, "Zalando's scikit-learn benchmark")],
    ("fashion-mnist", "mlp-300"): [("MLPClassifier", 0.870, "Zalando's scikit-learn benchmark")],
    ("fashion-mnist", "resnet"): [("best published, about 96.7-96.9%", 0.968, "Fashion-MNIST benchmark page")],
    ("fashion-mnist", "cnn-bn"): [("best published, about 96.7-96.9%", 0.968, "Fashion-MNIST benchmark page")],
    ("kmnist", "knn"): [("4-NN baseline", 0.9210, "Clanuwat et al. 2018")],
    ("kmnist", "cnn"): [("Keras simple CNN", 0.9463, "Clanuwat et al. 2018")],
    ("kmnist", "resnet"): [("PreActResNet-18", 0.9782, "Clanuwat et al. 2018")],
}


def references(dataset: str, model: str) -> list[dict]:
    return [{"description": d, "accuracy": a, "source": s} for d, a, s in REFERENCES.get((dataset, model), [])]
