"""One picture of what a net did with one digit: the preprocessing, the top probabilities, the attributions over the
digit, the first layer's filters, and each layer's output (feature maps as grids, dense layers as bars)."""

from __future__ import annotations

import math

import numpy as np

from mnistlab.evaluate.plots import _plt

MAX_LAYERS = 16  # the sheet shows the first ones of a deep net; --json lists every layer
MAX_MAPS = 16  # feature maps per layer on the sheet (4 x 4)


def mosaic(maps: np.ndarray, cols: int = 4, limit: int = MAX_MAPS) -> np.ndarray:
    """(C, H, W) maps, each scaled to [0, 1] (a flat map to 0), tiled into one image with a one-pixel gap (NaN)."""
    maps = maps[:limit]
    rows = math.ceil(len(maps) / cols)
    h, w = maps.shape[1:]
    lo, hi = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    flat = hi <= lo
    scaled = np.where(flat, 0.0, (maps - lo) / np.where(flat, 1, hi - lo))
    tiles = np.full((rows * cols, h + 1, w + 1), np.nan)  # each map with its gap below and to the right
    tiles[: len(maps), :h, :w] = scaled
    return tiles.reshape(rows, cols, h + 1, w + 1).transpose(0, 2, 1, 3).reshape(rows * (h + 1), cols * (w + 1))[:-1, :-1]


def sheet(result: dict, steps: dict[str, np.ndarray], layers: list[dict], filters: np.ndarray | None, classes: list[str]):
    plt = _plt()
    shown = layers[:MAX_LAYERS]
    layer_rows = math.ceil(len(shown) / 4)
    fig = plt.figure(figsize=(13, 6.2 + 2.6 * layer_rows))
    grid = fig.add_gridspec(2 + layer_rows, 6, height_ratios=[1, 1.15] + [1.2] * layer_rows, hspace=0.55, wspace=0.35, top=0.95, bottom=0.03)
    fig.suptitle(f"{result['image']}: {result['prediction']} ({max(result['probabilities']):.1%}); explained: {result['explained']}",
                 fontsize=11)
    for k, (name, img) in enumerate(list(steps.items())[-5:]):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(img, cmap="gray")
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    _probabilities(fig.add_subplot(grid[0, 5]), result, classes)
    digit = np.asarray(result["input"])
    for k, name in enumerate(("saliency", "integrated_gradients", "occlusion", "grad_cam")):
        _overlay(fig.add_subplot(grid[1, k]), digit, result["attributions"][name], name.replace("_", " "))
    ax = fig.add_subplot(grid[1, 4:])
    if filters is not None:
        ax.imshow(mosaic(filters, cols=8, limit=32), cmap="bwr")
        ax.set_title(f"first layer's filters ({min(len(filters), 32)} of {len(filters)})", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no convolution: no filters", ha="center", va="center", fontsize=8)
    ax.axis("off")
    rows = [grid[2 + r, :].subgridspec(1, 4, wspace=0.3) for r in range(layer_rows)]
    for k, layer in enumerate(shown):
        r, c = divmod(k, 4)
        _layer(fig.add_subplot(rows[r][0, c]), layer)
    return fig


def _probabilities(ax, result: dict, classes: list[str]) -> None:
    p = np.asarray(result["probabilities"])
    order = np.argsort(-p)[:5][::-1]
    ax.barh([classes[i] for i in order], p[order], color=["#c33" if i == result["class_index"] else "#88a" for i in order])
    ax.set_xlim(0, 1)
    ax.set_title("probabilities (top 5)", fontsize=8)
    ax.tick_params(labelsize=7)


def _overlay(ax, digit: np.ndarray, attribution, title: str) -> None:
    ax.imshow(digit, cmap="gray")
    if attribution is None:
        ax.set_title(f"{title}: no convolution", fontsize=8)
    else:
        a = np.asarray(attribution)
        bound = float(np.abs(a).max()) or 1.0
        ax.imshow(a, cmap="bwr", vmin=-bound, vmax=bound, alpha=0.6)
        ax.set_title(title, fontsize=8)
    ax.axis("off")


def _layer(ax, layer: dict) -> None:
    values = layer["values"]
    title = f"{layer['name']} ({layer['type']}) {'x'.join(map(str, layer['shape']))}"
    if values.ndim == 3:
        ax.imshow(mosaic(values), cmap="viridis")
        ax.axis("off")
    else:
        flat = values.reshape(-1)[:128]
        ax.bar(np.arange(len(flat)), flat, width=1.0, color="#47a")
        ax.tick_params(labelsize=6)
        if values.size > 128:
            title += " (first 128)"
    ax.set_title(title, fontsize=7)
