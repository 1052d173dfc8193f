"""What a net computes and where it looks, for one digit: each layer's output (layers found by walking the module
tree, never from a list per model) and four attributions through Captum: saliency, integrated gradients, occlusion,
and Grad-CAM on the last convolution. Captum is an optional extra: pip install 'mnistlab[explain]'."""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref

import numpy as np
import torch
from torch import nn

from mnistlab.errors import InvalidArgument

# leaves that change nothing worth looking at in evaluation (or only rescale what the next layer shows)
NOT_SHOWN = (nn.Dropout, nn.Dropout2d, nn.Flatten, nn.Identity, nn.modules.batchnorm._BatchNorm)
ATTRIBUTIONS = ("saliency", "integrated_gradients", "occlusion", "grad_cam")


def captum():
    try:
        import captum.attr
    except ImportError:
        raise InvalidArgument("mnistlab explain needs Captum, an optional extra: pip install 'mnistlab[explain]'") from None
    return captum.attr


def shown_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules whose outputs a sheet shows, in the order the module tree lists them."""
    return [(name, m) for name, m in net.named_modules() if name and not any(m.children()) and not isinstance(m, NOT_SHOWN)]


POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# Hooks (the layers' recording, Grad-CAM's) live on a module, so they see every forward pass through it, another
# thread's too. The inside view therefore runs on private copies, handed out one caller at a time and kept for the
# next: as many copies of a net as were ever in use at once. The served net itself never carries a hook.
_SPARE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> its copies not in use now
_BLOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # net -> its Grad-CAM layer, found once per net
_LOCK = threading.Lock()  # guards both tables (a WeakKeyDictionary is not safe to change from two threads)


@contextlib.contextmanager
def private_copy(net: nn.Module):
    """A copy of `net` that no other caller holds until this one is done with it: hooks put on it see only this
    caller's tensors, so any number of threads can explain with the same net while others predict with it."""
    with _LOCK:
        spare = _SPARE.setdefault(net, [])
        mine = spare.pop() if spare else None
    if mine is None:
        mine = copy.deepcopy(net)
    try:
        yield mine
    finally:
        with _LOCK:
            _SPARE[net].append(mine)


def last_conv_block(net: nn.Module) -> tuple[str, nn.Module] | None:
    """Where Grad-CAM looks: the output of the last convolutional block, the last leaf after the last Conv2d that still
    gives feature maps (its activation, not a pooling); the Conv2d itself when nothing follows it. None without one.
    Found by one forward pass, the first time a net is asked (the pad asks on every drawing)."""
    with _LOCK:
        known = _BLOCKS.get(net)
    if known is None:
        known = (_find_last_conv_block(net),)
        with _LOCK:
            _BLOCKS[net] = known
    return known[0]


def _find_last_conv_block(net: nn.Module) -> tuple[str, nn.Module] | None:
    x = torch.zeros(1, 1, 28, 28, device=next(net.parameters()).device)
    _, layers = activations(net, x)
    names = [layer["name"] for layer in layers]
    modules = dict(net.named_modules())
    convs = [i for i, name in enumerate(names) if isinstance(modules.get(name), nn.Conv2d)]
    if not convs:
        return None
    block = [i for i in range(convs[-1], len(layers)) if len(layers[i]["shape"]) == 3 and not isinstance(modules.get(names[i]), POOLS)
             and "#" not in names[i]]
    name = names[block[-1]] if block else names[convs[-1]]
    return name, modules[name]


def activations(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """The net's logits for `x` (1, 1, 28, 28) and each shown layer's output, in the order they were computed (a
    module called twice appears twice, its name suffixed #2)."""
    seen: list[dict] = []
    count: dict[str, int] = {}

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                count[name] = count.get(name, 0) + 1
                label = name if count[name] == 1 else f"{name}#{count[name]}"
                seen.append({"name": label, "type": type(module).__name__, "shape": list(output.shape[1:]),
                             "values": output.detach()[0].float().cpu().numpy()})
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in shown_layers(net)]
    try:
        with torch.no_grad():
            logits = net(x)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def attributions(net: nn.Module, x: torch.Tensor, target: int, methods=ATTRIBUTIONS) -> dict[str, np.ndarray | None]:
    """28x28 maps of how much each pixel counts for class `target`: |gradient| (saliency), integrated gradients from
    a blank image, occlusion by a 4x4 patch (stride 2), and Grad-CAM on the last convolutional block (None for nets without a Conv2d)."""
    attr = captum()
    x = x.detach().clone().requires_grad_(True)
    unknown = sorted(set(methods) - set(ATTRIBUTIONS))
    if unknown:
        raise InvalidArgument(f"unknown attribution {unknown[0]!r}; known: {', '.join(ATTRIBUTIONS)}")
    maps = {}
    if "saliency" in methods:
        maps["saliency"] = attr.Saliency(net).attribute(x, target=target, abs=True)
    if "integrated_gradients" in methods:
        maps["integrated_gradients"] = attr.IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=target,
                                                                               n_steps=32, internal_batch_size=32)
    if "occlusion" in methods:
        maps["occlusion"] = attr.Occlusion(net).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), target=target,
                                                          baselines=0.0, perturbations_per_eval=64)
    if "grad_cam" in methods:
        conv = last_conv_block(net)
        cam = None if conv is None else attr.LayerGradCam(net, conv[1]).attribute(x, target=target, relu_attributions=True)
        maps["grad_cam"] = None if cam is None else attr.LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear")
    return {k: None if v is None else v.detach()[0].sum(0).float().cpu().numpy() for k, v in maps.items()}


def first_filters(net: nn.Module) -> np.ndarray | None:
    """The first convolution's kernels, (out_channels, kh, kw) summed over input channels; None without one."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    return convs[0].weight.detach().sum(1).float().cpu().numpy() if convs else None


def penultimate(net: nn.Module, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """What the last Linear layer (the head) is given, for uint8 images (N, H, W) or (N, C, H, W): the net's own
    features."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidArgument("this net has no Linear layer: no penultimate features to map")
    out: list[np.ndarray] = []
    handle = linears[-1].register_forward_hook(lambda m, inputs, output: out.append(inputs[0].detach().flatten(1).float().cpu().numpy()))
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = torch.from_numpy(images[i:i + batch].astype(np.float32) / 255.0)
                net(x[:, None] if x.ndim == 3 else x)
    finally:
        handle.remove()
    return np.concatenate(out)
