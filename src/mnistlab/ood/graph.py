"""A run's kept detector as part of a PyTorch module, for the exports: images in, (probabilities, ood_score) out, so
a program that runs the ONNX or pt2 file gets every answer's score with it (digit_like: score >= the threshold in
the companion JSON)."""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.errors import RunError
from mnistlab.ood.detectors import FEATURE_DETECTORS, KNN_K


class WithScore(nn.Module):
    """`predictor` (images -> probabilities, as the run predicts) and the detector `name` on `net`'s logits or
    penultimate features, with the fitted arrays as buffers."""

    def __init__(self, predictor: nn.Module, net: nn.Module, name: str, fit=None):
        super().__init__()
        self.predictor, self.net, self.name = predictor, net, name
        if name in FEATURE_DETECTORS:
            from mnistlab.models.base import Net

            if not (isinstance(net, Net) and isinstance(net.head, nn.Linear)):
                raise RunError(f"the run's detector ({name}) reads the penultimate features, which an export reaches only in "
                               "a zoo net whose head is one linear layer; export without --ood (the answers' score is then "
                               "mnistlab's alone)")
            as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
            self.register_buffer("means", as_tensor(fit.means))
            self.register_buffer("precision", as_tensor(fit.precision))
            self.register_buffer("bank", as_tensor(fit.bank))
            self.register_buffer("origin", as_tensor(fit.origin))
            self.register_buffer("residual", as_tensor(fit.residual))
            self.alpha = float(fit.alpha)

    def forward(self, images: torch.Tensor):  # the name the export's dynamic batch size is given by
        x = images
        probs = self.predictor(x)
        if self.name == "msp":
            return probs, probs.max(1).values
        if self.name not in FEATURE_DETECTORS:
            logits = self.net(x)
            return probs, logits.max(1).values if self.name == "max_logit" else torch.logsumexp(logits, 1)
        f = self.net.forward_features(x)
        logits = self.net.forward_head(f)
        if self.name == "mahalanobis":
            d = f[:, None, :] - self.means[None]
            return probs, -torch.einsum("ncf,fg,ncg->nc", d, self.precision, d).min(1).values
        if self.name == "knn":
            unit = f / (f.norm(dim=1, keepdim=True).clamp_min(1e-12))
            kth = (unit @ self.bank.T).topk(min(KNN_K, len(self.bank)), dim=1).values[:, -1]
            return probs, -torch.sqrt(torch.clamp(2 - 2 * kth, min=0))
        residual = ((f - self.origin) @ self.residual).norm(dim=1)
        return probs, torch.logsumexp(logits, 1) - self.alpha * residual
