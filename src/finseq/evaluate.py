"""Predicted probabilities → metrics, beside the baselines any model must beat.

Baselines, both fit on the training labels only:
  - class prior: predicts the training class frequencies for every sample; its
    cross-entropy is `prior_loss`. `skill = 1 - loss / prior_loss` is > 0 only when
    the model knows more than the class balance.
  - majority: always predicts the most frequent training class; `majority_accuracy`.
"""

from __future__ import annotations

import numpy as np

from finseq.labels import CLASS_LABELS, NUM_CLASSES


def class_prior(train_classes: np.ndarray) -> np.ndarray:
    """Training class frequencies with add-one smoothing, so no class has probability 0."""
    counts = np.bincount(train_classes, minlength=NUM_CLASSES).astype(np.float64)
    return (counts + 1) / (counts.sum() + NUM_CLASSES)


def cross_entropy(probabilities: np.ndarray, classes: np.ndarray) -> float:
    picked = probabilities[np.arange(len(classes)), classes]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(classes: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(classes * NUM_CLASSES + predicted, minlength=NUM_CLASSES**2).reshape(
        NUM_CLASSES, NUM_CLASSES
    )


def balanced_accuracy(classes: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in `classes`."""
    counts = confusion_matrix(classes, predicted)
    support = counts.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(counts)[present] / support[present]))


def macro_f1(classes: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over the classes that occur in `classes` or in `predicted`."""
    counts = confusion_matrix(classes, predicted)
    true_positive = np.diag(counts).astype(np.float64)
    actual, guessed = counts.sum(axis=1), counts.sum(axis=0)
    present = (actual + guessed) > 0
    f1 = 2 * true_positive[present] / (actual[present] + guessed[present])
    return float(np.mean(f1))


def split_metrics(
    logits: np.ndarray, classes: np.ndarray, prior: np.ndarray
) -> dict[str, float | int]:
    """All metrics of one split; `classes` are class indices 0..2, `prior` from class_prior."""
    probabilities = softmax(logits)
    predicted = probabilities.argmax(axis=1)
    loss = cross_entropy(probabilities, classes)
    prior_loss = cross_entropy(np.broadcast_to(prior, probabilities.shape), classes)
    majority = int(np.argmax(prior))
    return {
        "samples": len(classes),
        "loss": loss,
        "accuracy": float(np.mean(predicted == classes)),
        "balanced_accuracy": balanced_accuracy(classes, predicted),
        "macro_f1": macro_f1(classes, predicted),
        "prior_loss": prior_loss,
        "majority_accuracy": float(np.mean(classes == majority)),
        "skill": 1.0 - loss / prior_loss,
    }


def confusion_csv(classes: np.ndarray, predicted: np.ndarray) -> str:
    """One `actual,predicted` row of labels per sample: the input of DVC's confusion template."""
    labels = np.asarray(CLASS_LABELS)
    rows = np.char.add(np.char.add(labels[classes].astype(str), ","), labels[predicted].astype(str))
    return "\n".join(["actual,predicted", *rows.tolist()]) + "\n"
