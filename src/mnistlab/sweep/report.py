"""The report of a sweep: `sweep.json`, `sweep.md`, the history plot (validation accuracy per trial
and the best so far) and the importance of each parameter (Optuna's default evaluator)."""

from __future__ import annotations

import datetime as _dt
import warnings

from mnistlab.evaluate import plots
from mnistlab.fileio import atomic_write_bytes, atomic_write_json
from mnistlab.sweep.urls import safe_url

HINT = "pass --out to a writable folder"


def _trial_row(t) -> dict:
    last = max(t.intermediate_values) if t.intermediate_values else None
    return {"number": t.number, "state": t.state.name.lower(), "value": t.value,
            "last_reported": t.intermediate_values[last] if last is not None else None, "epochs_reported": last,
            "params": t.params, "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run"),
            "host": t.user_attrs.get("host"), **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
            **({"surplus": True} if t.user_attrs.get("surplus") else {})}


def _importance(study) -> dict[str, float] | str:
    import optuna

    finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if finished < 3:
        return f"not computed: {finished} finished trial(s), at least 3 needed"
    try:
        with warnings.catch_warnings():  # the evaluator's notes on few trials are not the user's business
            warnings.simplefilter("ignore")
            return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except Exception as exc:  # too few finished trials, or a parameter that never varied
        return f"not computed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"


def history_figure(rows: list[dict], title: str):
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    done = [r for r in rows if r["state"] == "complete"]
    pruned = [r for r in rows if r["state"] == "pruned" and r["last_reported"] is not None]
    ax.scatter([r["number"] for r in done], [r["value"] for r in done], color="tab:blue", label="finished trial", zorder=3)
    ax.scatter([r["number"] for r in pruned], [r["last_reported"] for r in pruned], color="tab:gray", marker="x",
               label="pruned (last value)", zorder=3)
    best, xs, ys = None, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        best = r["value"] if best is None else max(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    if xs:
        last = max(r["number"] for r in rows)
        ax.step(xs + [last], ys + [ys[-1]], where="post", color="tab:orange", label="best so far")
        values = [r["value"] for r in done] + [r["last_reported"] for r in pruned]
        lo = sorted(values)[len(values) // 5] if len(values) > 4 else min(values)  # keep the interesting top in view
        bottom = max(0.0, lo - 0.2 * (max(values) - lo + 1e-3))
        ax.set_ylim(bottom, min(1.0, max(values) + 0.1 * (max(values) - lo + 1e-3)))
        below = sum(v < bottom for v in values)
        if below:
            ax.text(0.01, 0.02, f"{below} pruned trial(s) below the axis", transform=ax.transAxes, color="tab:gray", fontsize=9)
    ax.set(xlabel="trial", ylabel="validation accuracy", title=title)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def importance_figure(importance: dict[str, float], title: str):
    plt = plots._plt()
    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(importance[n], i, f" {importance[n]:.2f}", va="center")
    ax.set(xlabel="importance for validation accuracy (Optuna, normalised)", title=title, xlim=(0, max(importance.values()) * 1.2 or 1))
    return fig


def write_study_report(plan, study, final_run, why: str) -> dict:
    rows = [_trial_row(t) for t in study.get_trials(deepcopy=False)]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    best = study.best_trial
    importance = _importance(study)
    final = None
    if final_run is not None:
        m = final_run.metrics
        final = {"run": str(final_run.path), "test_accuracy": m["test_accuracy"], "test_loss": m.get("test_loss"),
                 "train_seconds": m["train_seconds"], "trial": best.number,
                 **({"steps": m["steps"]} if "steps" in m else {"epochs": m["epochs"]})}
    summary = {"study": plan.study, "storage": safe_url(plan.storage), "model": plan.model, "dataset": plan.dataset,
               "trials_requested": plan.trials, "states": counts, "stopped": why, "val_split": plan.val_split,
               "seed": plan.seed, "space": plan.space.to_dict(),
               "best": {"trial": best.number, "val_accuracy": best.value, "params": best.params,
                        "settings": {**plan.space.settings(best.params), **plan.extra}, "run": best.user_attrs.get("run")},
               "final": final, "importance": importance, "trials": rows,
               "written": _dt.datetime.now().isoformat(timespec="seconds")}
    atomic_write_json(plan.out / "sweep.json", summary, hint=HINT)
    title = f"{plan.model} on {plan.dataset}: study {plan.study}"
    atomic_write_bytes(plan.out / "history.png", plots.to_png(history_figure(rows, title)), hint=HINT)
    if isinstance(importance, dict) and importance:
        atomic_write_bytes(plan.out / "importance.png", plots.to_png(importance_figure(importance, "parameter importance")), hint=HINT)
    atomic_write_bytes(plan.out / "sweep.md", markdown(summary).encode(), hint=HINT)
    return summary


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(s: dict) -> str:
    from mnistlab.data import get_spec

    b = s["best"]
    across = bool(get_spec(s["dataset"]).environments)
    held = b["settings"].get("holdout_fraction", 0.2)
    lines = [f"# Sweep: {s['model']} on {s['dataset']} (study `{s['study']}`)", "",
             f"Storage `{s['storage']}`; {s['trials_requested']} trials requested; "
             + ", ".join(f"{n} {k}" for k, n in sorted(s["states"].items()))
             + (f". Objective: accuracy on {s['val_split']:,} held-out training images (never the test set)." if not across
                else f". Objective: the mean accuracy on the held-out {held:.0%} of each training environment (never "
                     "the test environment)."), "",
             f"**Best: trial {b['trial']}, validation accuracy {b['val_accuracy']:.4f}**", "",
             "| setting | value |", "| --- | --- |", *(f"| {k} | {_fmt(v)} |" for k, v in b["settings"].items()), ""]
    if s["final"]:
        f = s["final"]
        length = f"{f['steps']} steps" if "steps" in f else f"{f['epochs']} epochs"
        lines += [f"Retrained on the whole training set ({length}, {f['train_seconds']:.0f} s): "
                  f"**test accuracy {f['test_accuracy']:.4f}** (`{f['run']}`).", ""]
    lines += ["![history](history.png)", ""]
    if isinstance(s["importance"], dict):
        lines += ["| parameter | importance |", "| --- | ---: |", *(f"| {k} | {v:.3f} |" for k, v in s["importance"].items()),
                  "", "![importance](importance.png)", ""]
    else:
        lines += [f"Parameter importance {s['importance']}.", ""]
    names = sorted({k for r in s["trials"] for k in r["params"]})
    lines += ["| trial | state | val accuracy | " + " | ".join(names) + " | seconds |",
              "| ---: | --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: |"]
    for r in s["trials"]:
        value = r["value"] if r["value"] is not None else r["last_reported"]
        lines.append(f"| {r['number']} | {r['state']}{' (surplus)' if r.get('surplus') else ''} | {_fmt(value)} | "
                     + " | ".join(_fmt(r["params"].get(n)) for n in names) + f" | {_fmt(r['seconds'] and round(r['seconds']))} |")
    return "\n".join(lines) + "\n"
