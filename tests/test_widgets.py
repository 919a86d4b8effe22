"""Widget callbacks are plain functions: tested without a browser on a tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiny import tiny_model, tiny_tokenizer
from toolkit import Task, dataset_from_records, dropped_layers, predict
from toolkit.calibration import ece
from toolkit.widgets import LayerPicker, PruningExplorer, evaluate_layers, importance_colours

TASK = Task(name="tiny_w", instruction="sentiment of this review ?", label_names=("negative", "positive"),
            verbalizers=("negative", "positive"), input_name="review", use_chat_template=False)
RECORDS = [
    {"id": f"w-{i}", "text": t, "label": y}
    for i, (t, y) in enumerate([("the movie was good", 1), ("i hated the food", 0), ("great plot", 1),
                                ("awful service", 0), ("not bad", 1), ("very bad movie", 0)])
]


def test_evaluate_layers_matches_a_direct_computation():
    model, tok = tiny_model(), tiny_tokenizer()
    data = dataset_from_records("tiny_w", RECORDS, TASK)
    result = evaluate_layers(model, tok, data, [1, 3], example=2)
    assert dropped_layers(model) == ()  # the drop was undone
    from toolkit import drop_attention

    with drop_attention(model, [1, 3]):
        df = predict(model, tok, data, progress=False)
    probs = df[["p_negative", "p_positive"]].to_numpy()
    assert result.accuracy == pytest.approx(df.correct.mean())
    assert result.ece == pytest.approx(ece(probs, df.label.to_numpy()))
    assert result.prediction == ("negative", "positive")[int(df.pred[2])]
    assert "plot" in result.attribution_html
    with pytest.raises(ValueError, match="example index 9 is out of range"):
        evaluate_layers(model, tok, data, [], example=9)


def test_layer_picker_value_and_callback():
    picker = LayerPicker(4, pd.Series([0.3, 0.1, np.nan, 0.2]), selected=[1])
    assert picker.value == [1]
    seen = []
    picker.observe(seen.append)
    picker.buttons[3].value = True
    assert seen[-1] == [1, 3] and picker.value == [1, 3]
    picker.value = [0]
    assert picker.value == [0]
    assert picker.buttons[2].layout.border == "3px solid #cccccc"  # NaN importance is grey
    with pytest.raises(ValueError, match="importance has 3 values for 4 layers"):
        LayerPicker(4, pd.Series([0.1, 0.2, 0.3]))


def test_importance_colours_order():
    cols = importance_colours([0.0, 1.0])
    assert cols[0] != cols[1] and all(c.startswith("#") for c in cols)


def test_explorer_update_uses_the_picker():
    model, tok = tiny_model(), tiny_tokenizer()
    data = dataset_from_records("tiny_w", RECORDS, TASK)
    explorer = PruningExplorer(model, tok, data, example=0)
    explorer.picker.value = [0, 2]
    result = explorer.update()
    assert result.layers == (0, 2)
    assert "dropped:</b> [0, 2]" in explorer.output.value
    assert explorer.reference.layers == ()
