"""Widget callbacks are plain functions: tested without a browser on a tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiny import sentiment_task, tiny_model, tiny_tokenizer
from toolkit import drop_attention, predict, select_layers
from toolkit.data.datasets import dataset_from_records
from toolkit.models.adapters import dropped_layers
from toolkit.explorer import widgets as tw
from toolkit.metrics.calibration import ece
from toolkit.decisions.stats import paired_bootstrap
from toolkit.explorer.widgets import LayerPicker, PruningExplorer
from toolkit.explorer.steps import check_droppable, compare_to_reference, evaluate_layers, least_important, score_layers
from toolkit.explorer.html import colour_legend_html, importance_colours

TASK = sentiment_task("tiny_w")
RECORDS = [
    {"id": f"w-{i}", "text": t, "label": y}
    for i, (t, y) in enumerate([("the movie was good", 1), ("i hated the food", 0), ("great plot", 1),
                                ("awful service", 0), ("not bad", 1), ("very bad movie", 0)])
]
IMPORTANCE = pd.DataFrame({"cosine": [0.5, 0.01, 0.02, 0.03], "random": [0.1, 0.9, 0.3, 0.2]})


@pytest.fixture(scope="module")
def setup():
    return tiny_model(), tiny_tokenizer(), dataset_from_records("tiny_w", RECORDS, TASK)


def test_evaluate_layers_matches_a_direct_computation(setup):
    model, tok, data = setup
    result = evaluate_layers(model, tok, data, [1, 3], example=2)
    assert dropped_layers(model) == ()  # the drop was undone
    with drop_attention(model, [1, 3]):
        df = predict(model, tok, data, progress=False)
    probs = df[["p_negative", "p_positive"]].to_numpy()
    assert result.accuracy == pytest.approx(df.correct.mean())
    assert result.ece == pytest.approx(ece(probs, df.label.to_numpy()))
    assert result.prediction == ("negative", "positive")[int(df.pred[2])]
    assert result.gold == "positive" and result.text == "great plot" and result.n == 6
    assert "plot" in result.attribution_html
    with pytest.raises(ValueError, match="example index 9 is out of range"):
        evaluate_layers(model, tok, data, [], example=9)


def test_score_layers_in_chunks_equals_one_predict(setup):
    model, tok, data = setup
    seen = []
    scores = score_layers(model, tok, data, [2], chunks=3, on_progress=lambda f, what: seen.append(f))
    with drop_attention(model, [2]):
        df = predict(model, tok, data, progress=False)
    # fp32; batches of different composition (left padding) differ by rounding only, observed < 1e-6
    np.testing.assert_allclose(scores.probs, df[["p_negative", "p_positive"]].to_numpy(), atol=1e-5)
    assert scores.layers == (2,) and seen == sorted(seen) and len(seen) == 3 and seen[0] == 0


def test_compare_to_reference_is_a_paired_bootstrap(setup):
    model, tok, data = setup
    ref = score_layers(model, tok, data, [])
    pruned = score_layers(model, tok, data, [0, 1])
    table = compare_to_reference(pruned, ref, n_boot=200, seed=3)
    acc_ref = (ref.probs.argmax(1) == ref.labels).mean()
    acc_pruned = (pruned.probs.argmax(1) == pruned.labels).mean()
    assert table.loc["accuracy", "delta"] == pytest.approx(acc_pruned - acc_ref)
    assert table.loc["ECE", "delta"] == pytest.approx(ece(pruned.probs, pruned.labels) - ece(ref.probs, ref.labels))
    direct = paired_bootstrap(lambda p, y: ece(p, y), (ref.probs, ref.labels), (pruned.probs, pruned.labels),
                              n_boot=200, seed=3)
    assert (table.loc["ECE", "low"], table.loc["ECE", "high"]) == pytest.approx((direct.low, direct.high))
    assert list(table.better) == ["higher", "lower"] and set(table.n) == {6}
    same = compare_to_reference(ref, ref)
    assert (same[["delta", "low", "high"]].to_numpy() == 0).all()


def test_layer_picker_value_and_callback():
    picker = LayerPicker(4, pd.Series([0.3, 0.1, np.nan, 0.2]), selected=[1])
    assert picker.value == [1] and picker.buttons[1].button_style == "danger"
    seen = []
    picker.observe(seen.append)
    picker.buttons[3].value = True
    assert seen[-1] == [1, 3] and picker.value == [1, 3] and picker.buttons[3].button_style == "danger"
    picker.value = [0]
    assert picker.value == [0] and picker.buttons[1].button_style == ""
    assert picker.buttons[2].layout.border == "4px solid #cccccc"  # NaN importance is grey
    assert "rank 1 (1 = least important)" in picker.buttons[1].tooltip
    with pytest.raises(ValueError, match="importance has 3 values for 4 layers"):
        LayerPicker(4, pd.Series([0.1, 0.2, 0.3]))


def test_importance_colours_rank_separates_what_linear_squashes():
    scores = [0.0001, 0.0002, 0.0003, 0.5]  # one dominant layer, as in SmolLM2's layers 0, 1, 24
    linear = importance_colours(scores, "linear")
    assert len(set(linear[:3])) == 1  # the problem: three low layers in one colour
    assert len(set(importance_colours(scores, "rank"))) == 4
    assert len(set(importance_colours(scores, "log"))) == 4
    ranks = importance_colours([3.0, 1.0, 2.0, np.nan], "rank")
    assert ranks[1] == importance_colours([0.0, 1.0], "linear")[0] and ranks[3] == "#cccccc"
    assert importance_colours([np.nan, np.nan]) == ["#cccccc", "#cccccc"]
    with pytest.raises(ValueError, match="unknown colour scale 'loud'"):
        importance_colours(scores, "loud")
    legend = colour_legend_html(scores, "rank", name="cosine")
    assert "least important" in legend and "0.0001" in legend and "0.5" in legend and "cosine" in legend


def test_least_important_and_check_droppable():
    assert least_important(IMPORTANCE, "cosine", 2) == select_layers(IMPORTANCE.cosine, 2) == [1, 2]
    assert least_important(IMPORTANCE, "random", 1) == [0]
    assert least_important(IMPORTANCE.cosine, None, 1) == [1]
    with pytest.raises(ValueError, match="unknown importance metric 'cos'"):
        least_important(IMPORTANCE, "cos", 1)
    assert check_droppable([3, 1], 4) == (1, 3)
    with pytest.raises(ValueError, match="cannot drop all 4 attention layers"):
        check_droppable([0, 1, 2, 3], 4)


def test_explorer_update_uses_the_picker(setup):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, IMPORTANCE, example=0)
    assert explorer.picker.value == []  # nothing dropped before anyone clicks
    explorer.picker.value = [0, 2]
    assert "out of date" in explorer.status.value
    result = explorer.update()
    assert result.layers == (0, 2)
    assert "dropped:</b> [0, 2]" in explorer.output.value
    assert "vs unpruned" in explorer.output.value and "lower is better" in explorer.output.value
    assert "gold label: <b>positive</b>" in explorer.output.value
    assert explorer.output.value.count("toolkit-attributions") == 2  # before and after, side by side
    assert explorer.reference.layers == () and explorer.status.value == ""


def test_explorer_busy_state_and_cache(setup, monkeypatch):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, IMPORTANCE)
    states = []
    real = explorer._on_progress
    monkeypatch.setattr(explorer, "_on_progress", lambda f, w: (states.append(
        (explorer.button.disabled, explorer.button.description, explorer.progress.layout.visibility)), real(f, w)))
    calls = []
    monkeypatch.setattr(tw, "score_layers", lambda *a, **k: calls.append(a[3]) or score_layers(*a, **k))
    explorer.update([1])
    assert states and all(s == (True, "evaluating...", "visible") for s in states)
    assert not explorer.button.disabled and explorer.button.description == "evaluate"
    assert explorer.progress.layout.visibility == "hidden"
    explorer.picker.value = []  # re-pick a set evaluated before: shown at once, from the cache
    assert "dropped:</b> none" in explorer.output.value and explorer.status.value == ""
    explorer.picker.value = [1]
    assert "dropped:</b> [1]" in explorer.output.value
    assert calls == [(1,)]  # only [1] was ever scored after the reference


def test_explorer_shows_errors_in_the_widget(setup, monkeypatch):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data)
    assert explorer.update([0, 1, 2, 3]) is None
    assert 'class="tk-error"' in explorer.status.value and "cannot drop all 4" in explorer.status.value
    assert not explorer.button.disabled
    monkeypatch.setattr(tw, "score_layers", lambda *a, **k: 1 / 0)
    assert explorer.update([2]) is None
    assert "ZeroDivisionError" in explorer.status.value and not explorer.button.disabled
    assert dropped_layers(model) == ()


def test_explorer_pickers_sentence_and_static_copy(setup):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, IMPORTANCE)
    explorer.metric.value, explorer.k.value = "random", 2
    explorer._select_k()
    assert explorer.picker.value == [0, 3]
    assert "random" in explorer.legend.value
    explorer.sentence.value = 3
    assert explorer.result.example == 3 and explorer.result.gold == "negative"
    assert "awful service" in explorer.output.value
    # evaluate() fills the cache without touching what is shown
    shown = explorer.output.value
    explorer.evaluate([1, 2])
    assert explorer.output.value == shown and explorer.cached([1, 2])
    bundle = explorer._repr_mimebundle_()
    assert "VBox" not in bundle["text/plain"] and "application/vnd.jupyter.widget-view+json" in bundle
    static = explorer._static_bundle(explorer._html(explorer.result))
    assert "tk-static-copy" in static["text/html"] and "accuracy" in static["text/plain"]
    assert "<style>.tk-static-copy{display:none}</style>" in explorer.output.value  # live: the copy is hidden


# ----------------------------------------------------------------------------- faithfulness
def test_explorer_shows_the_sentences_comprehensiveness_before_and_after(setup):
    from toolkit.attribution import attribute
    from toolkit.explorer.faithfulness import sentence_comprehensiveness

    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, IMPORTANCE, example=3)
    result = explorer.update([1, 3])
    ex = data.examples[3]
    with drop_attention(model, [1, 3]):
        attr = attribute(model, tok, TASK, [ex], backend="fast")[0]
    direct = sentence_comprehensiveness(model, tok, TASK, ex.text, attr, [1, 3])
    before = sentence_comprehensiveness(model, tok, TASK, ex.text, attribute(model, tok, TASK, [ex], backend="fast")[0])
    # atol: the same forwards in other batches (memo vs fresh), float32 rounding, observed < 1e-6
    assert result.faithfulness.aopc == pytest.approx(direct.aopc, abs=1e-5)
    assert explorer.reference.faithfulness.aopc == pytest.approx(before.aopc, abs=1e-5)
    out = explorer.output.value
    assert "faithfulness of this sentence's explanation" in out and "higher is better" in out
    assert f"unpruned <b>{before.aopc:.3f}</b>" in out and f"dropped <b>{direct.aopc:.3f}</b>" in out
    assert "erased" in out and "comprehensiveness" in out
    # evaluate_layers (the one-call form) carries the same number
    assert evaluate_layers(model, tok, data, [1, 3], example=3).faithfulness.aopc == pytest.approx(direct.aopc, abs=1e-5)


def test_explorer_faithfulness_button_busy_cache_and_numbers(setup, monkeypatch):
    from toolkit.explorer.faithfulness import compare_comprehensiveness, set_comprehensiveness

    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, IMPORTANCE, n_boot=300, seed=2)
    assert "press <b>faithfulness</b>" in explorer.faith_output.value  # nothing computed before a click
    explorer.update([0, 2])
    states, calls = [], []
    real = explorer._on_faith_progress
    monkeypatch.setattr(explorer, "_on_faith_progress", lambda f, w: (states.append(
        (explorer.faith_button.disabled, explorer.button.disabled, explorer.faith_button.description,
         explorer.progress.layout.visibility)), real(f, w)))
    monkeypatch.setattr(tw, "set_comprehensiveness",
                        lambda *a, **k: calls.append(a[3]) or set_comprehensiveness(*a, **k))
    table = explorer.update_faithfulness()
    assert states and all(s == (True, True, "computing...", "visible") for s in states)
    assert not explorer.faith_button.disabled and not explorer.button.disabled
    assert explorer.faith_button.description == "faithfulness" and explorer.progress.layout.visibility == "hidden"
    assert calls == [(), (0, 2)] and explorer.faith_status.value == ""
    direct = compare_comprehensiveness(set_comprehensiveness(model, tok, data, [0, 2]),
                                       set_comprehensiveness(model, tok, data, []), n_boot=300, seed=2)
    np.testing.assert_allclose(table[["value", "reference", "delta", "low", "high"]].to_numpy(dtype=float),
                               direct[["value", "reference", "delta", "low", "high"]].to_numpy(dtype=float), atol=1e-5)
    panel = explorer.faith_output.value
    assert "faithfulness on all 6 sentences" in panel and "AOPC comprehensiveness" in panel
    assert "higher is better" in panel and "n = 6 sentences" in panel and f"{table.iloc[0].delta:+.3f}" in panel
    # another layer set reuses the unpruned reference; going back to [0, 2] comes from the cache
    explorer.update([1])
    assert "press <b>faithfulness</b>" in explorer.faith_output.value
    explorer.update_faithfulness()
    explorer.update([0, 2])
    assert "AOPC comprehensiveness" in explorer.faith_output.value
    assert calls == [(), (0, 2), (1,)]
    static = explorer._static_bundle(explorer._static_body())["text/html"]
    assert "faithfulness on all 6 sentences" in static and "tk-static-copy" in static


def test_explorer_faithfulness_errors_show_in_the_widget(setup, monkeypatch):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data)
    monkeypatch.setattr(tw, "set_comprehensiveness", lambda *a, **k: 1 / 0)
    assert explorer.update_faithfulness() is None
    assert 'class="tk-error"' in explorer.faith_status.value and "ZeroDivisionError" in explorer.faith_status.value
    assert not explorer.faith_button.disabled and not explorer.button.disabled
    assert dropped_layers(model) == ()
    with pytest.raises(ValueError, match="unknown faithfulness 'eraser'; expected one of"):
        PruningExplorer(model, tok, data, faithfulness="eraser")


@pytest.mark.parametrize("method, signed", [("saliency", False), ("input_x_gradient_signed", True)])
def test_explorer_legend_is_true_to_the_method(setup, method, signed):
    model, tok, data = setup
    explorer = PruningExplorer(model, tok, data, method=method)
    out = explorer.output.value
    assert out.count("tk-attribution-legend") == 1  # one legend under both columns
    assert ("pushes towards the predicted label" in out) == signed
    assert ("no direction" in out) == (not signed)
    assert "red</span> = pushes towards the label" not in out  # the old, wrong legend is gone
