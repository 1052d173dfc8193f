"""Predict classes for image files with a trained run: the model loads once, images go in one batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.preprocess import save_steps, to_mnist
from mnistlab.run import Run


def predict_images(run: Run | str | Path, images: list[str | Path | bytes], *, top: int = 3, deskew: bool = False,
                   save_dir: str | Path | None = None) -> list[dict]:
    """One result per image: {"image", "prediction", "probability", "top": [{"class", "probability"}...], "ood_score",
    "digit_like" (for a digit model; else "in_distribution")} or {"image", "error"}."""
    run = run if isinstance(run, Run) else Run(run)
    run.refuse_across_environments("predict", grey_ok=True)
    if top < 1:
        raise MnistlabError(f"--top must be at least 1, got {top}")
    results, batch, where = [], [], []
    for k, src in enumerate(images):
        name = f"image-{k}" if isinstance(src, bytes) else str(src)
        try:
            pre = to_mnist(src, deskew_digit=deskew, keep_steps=save_dir is not None)
        except MnistlabError as exc:
            results.append({"image": name, "error": str(exc)})
            continue
        if save_dir is not None:
            save_steps(pre, save_dir, Path(name).stem if not isinstance(src, bytes) else name)
        results.append({"image": name})
        batch.append(pre.image)
        where.append(len(results) - 1)
    if batch:
        from mnistlab.ood import judged

        probs = run.predict_proba(np.stack(batch))
        classes = run.classes
        for i, p, judgement in zip(where, probs, judged(run, np.stack(batch))):
            order = np.argsort(-p)[: min(top, len(classes))]
            results[i].update({"prediction": classes[order[0]], "probability": float(p[order[0]]),
                               "top": [{"class": classes[j], "probability": float(p[j])} for j in order], **judgement})
    return results
