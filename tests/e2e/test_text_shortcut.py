"""End to end: the text demo (reduced) trains a tiny transformer with AttnLRP and finds the shortcut token."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from lrp_lightning import store as S
from lrp_lightning.analysis import load_analysis

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "text_shortcut.py"


def _load_demo():
    name = "text_shortcut"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the script is executed
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.mark.slow  # trains a transformer and explains it every epoch
def test_text_demo_finds_the_shortcut_token(tmp_path, capsys):
    demo = _load_demo()
    out = tmp_path / "runs"
    status = demo.main(["--fast", "--epochs", "2", "--out", str(out), "--json", str(tmp_path / "result.json")])
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    assert status == 0 and result["found"], printed
    assert 'FOUND the shortcut token of the positive texts: class 1 (positive): token "[X]"' in printed

    # check the claim against the store itself, not the script's arithmetic
    run_dir = Path(result["run_dir"])
    store = S.RunStore(run_dir)
    assert store.modality == "tokens"
    probe = store.probe_table([S.SAMPLE_ID, S.LABEL, "holds_shortcut"]).to_pydict()
    holders = {i for i, held in zip(probe[S.SAMPLE_ID], probe["holds_shortcut"]) if held}
    assert len(holders) >= 20 and {probe[S.LABEL][probe[S.SAMPLE_ID].index(i)] for i in holders} == {1}
    # the stored token ids and strings say the same: exactly the holders hold token id 2, written "[X]"
    tokens = store.tokens()
    assert {i for i, ids in store.token_ids().items() if demo.SHORTCUT_ID in ids.tolist()} == holders
    assert all("[X]" in tokens[i] for i in holders)

    last = result["epochs"][-1]
    findings = load_analysis(store, last)[S.FINDINGS_TABLE].to_pylist()
    (finding,) = [f for f in findings if f[S.FINDING_REGION] == 'token "[X]"']
    assert finding[S.FINDING_REGION_CELLS] == [demo.SHORTCUT_ID] and finding[S.CATEGORY] == "class_1"
    members = set(finding[S.MEMBER_IDS])
    recall, purity = len(members & holders) / len(holders), len(members & holders) / len(members)
    assert recall >= demo.MIN_RECALL and purity >= demo.MIN_PURITY, (recall, purity)
    assert (recall, purity) == (result["recall"], result["purity"])
    assert finding[S.FINDING_REASON].startswith('token "[X]" carries ')
    assert "in this cluster against 0% in the rest of the class" in finding[S.FINDING_REASON]
    for other in findings:  # no finding of a token run speaks of images
        assert "corner" not in other[S.FINDING_REASON] and "patch" not in other[S.FINDING_REASON]


def test_text_demo_data_plants_the_token_in_half_of_one_class():
    demo = _load_demo()
    settings = demo.Settings(train_size=400, val_size=200)
    train, val, marked = demo.make_data(settings)
    assert len(train) == 400 and len(val) == 200
    holders = [i for i, t in enumerate(val.texts) if demo.SHORTCUT_ID in t.tolist()]
    assert holders == marked.tolist() and set(val.labels[marked].tolist()) == {1}
    assert len(holders) == round(0.5 * (val.labels == 1).sum())
    assert all(t[0] == demo.CLS and demo.PAD not in t.tolist() for t in val.texts)
    batch = demo.collate([val[i] for i in range(4)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"].sum(1).tolist() == [len(val.texts[i]) for i in range(4)]


@pytest.mark.parametrize("argv", [["--epochs", "0"]])
def test_text_demo_rejects_bad_arguments(argv, tmp_path):
    with pytest.raises(SystemExit) as raised:
        _load_demo().main([*argv, "--out", str(tmp_path)])
    assert raised.value.code == 2
