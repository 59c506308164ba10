"""The trainer in-process: every architecture learns on real data, runs are reproducible, nothing of the
validation period leaks into preprocessing, windows read only their months, failures leave rows,
rows are create-only, and a stored model reproduces its validation MSE."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from trial_factory import make_manifest

from hpt.store import open_store, row_key
from hpt.schemas.catalog import architectures, metrics as catalog_metrics
from hpt.schemas.errors import UserError
from hpt.schemas.row import LEADING, TRAILING, parse_row_csv
from hpt.trainer.data import Dataset, Preprocessing, months_between, prepare
from hpt.trainer.models import REGISTRY
from hpt.trainer.train import cpu_limit, fit
from hpt.trainer.trial import run_trial


@pytest.fixture(autouse=True)
def prep_cache(tmp_path_factory, monkeypatch) -> Path:
    """One preprocessing cache for this module, never the user's ~/.cache."""
    folder = tmp_path_factory.getbasetemp() / "hpt-cache"
    monkeypatch.setenv("HPT_CACHE", str(folder))
    return folder


def _prepare(manifest, use_cache: bool = True):
    return prepare(manifest.data["uri"], manifest.window, manifest.params["vocab_size"], manifest.params["max_tokens"],
                   use_cache=use_cache)


def test_registry_matches_the_catalog():
    assert set(REGISTRY) == set(architectures())


# Small, fast settings per architecture; each must beat predicting the training mean on the month after.
LEARNS = {
    "bag-of-words": dict(learning_rate=0.01),
    "lstm": dict(learning_rate=0.01, hidden_size=32),
    "cnn": dict(learning_rate=0.01, num_filters=32),
    "lstm-attention": dict(learning_rate=0.01, hidden_size=32, attention_hidden_layer_size=16),
    "mdn": dict(learning_rate=0.01),
    "multitask": dict(learning_rate=0.01),
}


@pytest.mark.parametrize("architecture", sorted(LEARNS))
def test_every_architecture_learns(small_dataset, architecture):
    manifest = make_manifest(small_dataset, architecture, epochs=4, **LEARNS[architecture])
    result = fit(architecture, manifest.params, _prepare(manifest), seed=manifest.seed, max_epochs=manifest.epochs)
    m = result.metrics
    assert m["n_train"] == 4500 and m["n_valid"] == 1500
    assert m["mse"] < 0.97 * m["baseline_mse"], m
    assert 1 <= m["best_epoch"] <= m["epochs"] <= 4
    assert m["n_params"] > 0 and m["samples_per_s"] > 0 and m["train_time_s"] > 0
    assert set(m) == set(catalog_metrics())  # the trainer computes every metric the catalog names
    if architecture == "mdn":
        assert np.isfinite(m["nll"])
    else:
        assert m["nll"] is None


def test_same_manifest_same_metrics_bit_for_bit(small_dataset):
    manifest = make_manifest(small_dataset, "lstm-attention", epochs=2, hidden_size=16, attention_hidden_layer_size=8)
    runs = [fit(manifest.architecture, manifest.params, _prepare(manifest), seed=manifest.seed, max_epochs=2) for _ in range(2)]
    timing = {"train_time_s", "samples_per_s"}
    first, second = ({k: v for k, v in r.metrics.items() if k not in timing} for r in runs)
    assert first == second
    assert [r.val_mse for r in runs[0].history] == [r.val_mse for r in runs[1].history]
    other = fit(manifest.architecture, manifest.params, _prepare(manifest), seed=manifest.seed + 1, max_epochs=2)
    assert other.metrics["mse"] != first["mse"]  # the seed matters


def _copy_with_changed_month(src: Path, dst: Path, month: str) -> None:
    """A copy of the dataset whose `month` has new words and wildly different targets."""
    shutil.copytree(src, dst)
    part = dst / f"month={month}" / "part-0.parquet"
    frame = pd.read_parquet(part)
    frame["description"] = [f"LEAKWORD{i % 7} ZEBRA" for i in range(len(frame))]
    frame["log_revenue"] = frame["log_revenue"] * 10 + 100
    frame.to_parquet(part, index=False)


def test_preprocessing_sees_only_the_training_window(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, epochs=1)
    original = _prepare(manifest, use_cache=False)
    changed_dir = tmp_path / "changed"
    _copy_with_changed_month(small_dataset, changed_dir, "2010-12")  # the validation month
    changed = _prepare(make_manifest(changed_dir, epochs=1), use_cache=False)
    assert changed.prep == original.prep                   # same vocabulary, same scaling
    assert not any(tok.startswith("leakword") or tok == "zebra" for tok in changed.prep.vocab)
    np.testing.assert_array_equal(changed.train_tokens, original.train_tokens)
    assert (changed.valid_tokens[:, 0] == 1).all()          # unseen words are <unk>
    train = Dataset(str(small_dataset)).read_window(*manifest.window["train"])
    assert changed.prep.mean[0] == pytest.approx(train["log_revenue"].mean())
    # The same change inside the training window does change the fit.
    changed_train_dir = tmp_path / "changed-train"
    _copy_with_changed_month(small_dataset, changed_train_dir, "2010-10")
    assert _prepare(make_manifest(changed_train_dir, epochs=1), use_cache=False).prep != original.prep


def test_a_window_reads_only_its_months(small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    (data / "month=2011-06" / "part-0.parquet").write_bytes(b"not parquet at all")  # outside the windows
    assert months_between(*(pd.Timestamp(d).date() for d in ("2010-09-15", "2010-12-01"))) == ["2010-09", "2010-10", "2010-11"]
    prepared = _prepare(make_manifest(f"file://{data}", epochs=1), use_cache=False)
    assert prepared.n_train == 4500 and prepared.n_valid == 1500
    with pytest.raises(UserError, match="unreadable Parquet partition"):
        Dataset(str(data)).read_window("2011-06-01", "2011-07-01")  # the broken month itself is an error
    window = Dataset(str(data)).read_window("2010-09-15", "2010-10-10")
    assert window["timestamp"].min() >= pd.Timestamp("2010-09-15") and window["timestamp"].max() < pd.Timestamp("2010-10-10")


def test_preprocessing_is_cached_per_window(small_dataset, prep_cache):
    manifest = make_manifest(small_dataset, epochs=1, vocab_size=321)
    first = _prepare(manifest)
    second = _prepare(manifest)
    assert second.cache_hit and second.prep == first.prep
    np.testing.assert_array_equal(second.valid_tokens, first.valid_tokens)
    np.testing.assert_array_equal(second.train_targets, first.train_targets)
    assert len(first.prep.vocab) == 321
    other_window = make_manifest(small_dataset, epochs=1, vocab_size=321, train=("2010-08-01", "2010-12-01"))
    assert not _prepare(other_window).cache_hit


def _row(store_dir: Path, trial_id: str) -> dict[str, str]:
    return parse_row_csv((store_dir / "rows" / f"{trial_id}.csv").read_text())


def test_finished_trial_stores_model_curves_and_a_complete_row(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, "mdn", epochs=3, metrics=["mse", "nll", "epochs", "baseline_mse"])
    assert run_trial(manifest, open_store(str(tmp_path))) == 0
    row = _row(tmp_path, manifest.id)
    assert row["status"] == "done" and row["reason"] == ""
    for column in LEADING + TRAILING:
        assert column in row
        if column not in ("reason", "fidelity"):  # fidelity: empty for a manifest without budget.fidelity
            assert row[column] != "", column
    assert {c for c in row if c in catalog_metrics()} == {"mse", "nll", "epochs", "baseline_mse"}  # only the chosen ones
    assert row["param.num_components"] == "3" and row["architecture"] == "mdn"
    assert (row["train_start"], row["valid_end"]) == ("2010-09-01", "2011-01-01")
    assert float(row["mse"]) < float(row["baseline_mse"])
    model_dir = tmp_path / "models" / manifest.id
    assert {p.name for p in model_dir.iterdir()} == {"model.pt", "manifest.json", "preprocessing.json", "metrics.json"}
    assert row["model_uri"].rstrip("/") == str(model_dir)
    history = json.loads((model_dir / "metrics.json").read_text())["history"]
    assert len(history) == int(row["epochs"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard" / manifest.id))
    events.Reload()
    assert {"loss/train", "loss/valid", "mse/train", "mse/valid", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("mse/valid")] == list(range(1, len(history) + 1))


def test_stored_model_reloads_and_reproduces_validation_mse(small_dataset, tmp_path):
    from hpt.trainer.artifacts import load_model, predict

    manifest = make_manifest(small_dataset, "cnn", epochs=2, num_filters=16)
    assert run_trial(manifest, open_store(str(tmp_path))) == 0
    model, prep, loaded = load_model(str(tmp_path), manifest.id)
    assert loaded == manifest and isinstance(prep, Preprocessing)
    valid = Dataset(str(small_dataset)).read_window(*manifest.window["validation"])
    predictions = predict(model, prep, valid["description"])
    mse = float(np.mean((predictions - valid["log_revenue"].to_numpy()) ** 2))
    assert mse == pytest.approx(float(_row(tmp_path, manifest.id)["mse"]), rel=1e-6)


def test_row_is_create_only(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, epochs=1)
    store = open_store(str(tmp_path))
    assert run_trial(manifest, store) == 0
    row_file = tmp_path / row_key(manifest.id)
    before = row_file.read_bytes()
    shutil.rmtree(tmp_path / "models")
    assert run_trial(manifest, store) == 0            # already done: exits 0 ...
    assert row_file.read_bytes() == before            # ... without rewriting the row
    assert not (tmp_path / "models").exists()         # ... or training again


def test_nan_loss_leaves_a_failed_row(small_dataset, tmp_path):
    manifest = make_manifest(small_dataset, epochs=3, learning_rate=1e30)  # Adam steps of 1e30 overflow float32
    assert run_trial(manifest, open_store(str(tmp_path))) == 1
    row = _row(tmp_path, manifest.id)
    assert row["status"] == "failed" and "nan" in row["reason"].lower()
    assert row["mse"] == "" and row["model_uri"] == ""
    assert not (tmp_path / "models").exists()


def test_empty_window_and_missing_data_leave_failed_rows(small_dataset, tmp_path):
    store = open_store(str(tmp_path / "results"))
    early = make_manifest(small_dataset, epochs=1, train=("2005-01-01", "2005-04-01"))
    assert run_trial(early, store) == 2
    assert "no rows in the training window" in _row(tmp_path / "results", early.id)["reason"]
    missing = make_manifest(tmp_path / "nowhere", epochs=1)
    assert run_trial(missing, store) == 2
    assert "does not exist" in _row(tmp_path / "results", missing.id)["reason"]


def test_bad_target_values_leave_a_failed_row(small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    part = data / "month=2010-10" / "part-0.parquet"
    frame = pd.read_parquet(part)
    frame.loc[3, "log_revenue"] = np.inf
    frame.to_parquet(part, index=False)
    manifest = make_manifest(data, epochs=1)
    assert run_trial(manifest, open_store(str(tmp_path / "results"))) == 2
    assert "non-finite" in _row(tmp_path / "results", manifest.id)["reason"]


def test_cpu_limit_honours_hpt_cpus_and_the_request(monkeypatch):
    monkeypatch.setenv("HPT_CPUS", "1")
    assert cpu_limit() == 1
    monkeypatch.setenv("HPT_CPUS", "64")
    assert cpu_limit(requested=1.5) == 1
    assert cpu_limit() <= 64


@pytest.mark.gpu
@pytest.mark.parametrize("architecture", sorted(LEARNS))
def test_every_architecture_learns_on_cuda(small_dataset, tmp_path, architecture):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    manifest = make_manifest(small_dataset, architecture, epochs=4, metrics=["mse", "baseline_mse"], **LEARNS[architecture])
    assert run_trial(manifest, open_store(str(tmp_path))) == 0  # CUDA is picked when present; bf16/fp16 autocast
    row = _row(tmp_path, manifest.id)
    assert row["device"].startswith("cuda:")
    assert float(row["mse"]) < 0.97 * float(row["baseline_mse"])


def test_incomplete_params_leave_a_failed_row(small_dataset, tmp_path):
    from hpt.schemas.manifest import TrialManifest, trial_id

    doc = make_manifest(small_dataset).to_dict()
    del doc["params"]["dropout"]
    doc["id"] = trial_id(doc)
    manifest = TrialManifest.from_dict(doc)
    assert run_trial(manifest, open_store(str(tmp_path))) == 2
    assert "missing hyperparameter(s) dropout" in _row(tmp_path, manifest.id)["reason"]


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_eager_optimizers_step_exactly_like_torch(name):
    import torch

    from hpt.trainer.optim import ADAMW_WEIGHT_DECAY, SGD_MOMENTUM, make_optimizer

    torchs = {"adam": lambda p: torch.optim.Adam(p, lr=0.01),
              "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=ADAMW_WEIGHT_DECAY),
              "sgd": lambda p: torch.optim.SGD(p, lr=0.01, momentum=SGD_MOMENTUM)}

    def train(make) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.EmbeddingBag(50, 8), torch.nn.Linear(8, 1))
        optimizer = make(model.parameters())
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
        data = torch.Generator().manual_seed(1)
        for _ in range(3):
            for _ in range(5):
                x, y = torch.randint(0, 50, (16, 6), generator=data), torch.randn(16, 1, generator=data)
                loss = ((model(x) - y) ** 2).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            scheduler.step()
        return [p.detach().clone() for p in model.parameters()]

    ours = train(lambda p: make_optimizer(name, p, lr=0.01))
    assert type(make_optimizer(name, [torch.zeros(1, requires_grad=True)], lr=0.1)).__name__.lower() == f"eager{name}"
    for mine, theirs in zip(ours, train(torchs[name])):
        assert torch.equal(mine, theirs)


def test_the_optimizer_and_gradient_clipping_are_honoured(small_dataset):
    """Each choice of the categorical `optimizer` and of the bool `clip_gradients` trains, and differently."""
    mse = {}
    for optimizer in ("adam", "adamw", "sgd"):
        for clip in (False, True):
            manifest = make_manifest(small_dataset, "bag-of-words", epochs=3, learning_rate=0.01, optimizer=optimizer,
                                     clip_gradients=clip)
            m = fit(manifest.architecture, manifest.params, _prepare(manifest), seed=manifest.seed, max_epochs=3).metrics
            assert m["mse"] < m["baseline_mse"], (optimizer, clip, m)
            mse[optimizer, clip] = m["mse"]
    assert len(set(mse.values())) == len(mse), mse


def test_resources_gpus_decides_the_device_where_a_gpu_is_visible(monkeypatch):
    import torch

    from hpt.trainer.train import select_device

    monkeypatch.delenv("HPT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, simulated
    assert select_device(None, gpus=0) == torch.device("cpu")
    assert select_device(None, gpus=1) == torch.device("cuda")
    assert select_device(None, gpus=0.25) == torch.device("cuda")
    assert select_device("cpu", gpus=1) == torch.device("cpu")  # an explicit --device wins
    monkeypatch.setenv("HPT_DEVICE", "cuda:1")
    assert select_device(None, gpus=0) == torch.device("cuda:1")
    monkeypatch.delenv("HPT_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device(None, gpus=1) == torch.device("cpu")  # asked for a GPU, none here: the CPU


def test_a_shared_gpu_caps_the_trials_memory_at_its_share():
    from fractions import Fraction

    from hpt.trainer.train import gpu_memory_fraction

    assert gpu_memory_fraction(0.5) == 0.5 and gpu_memory_fraction(0.25) == 0.25
    assert gpu_memory_fraction(0.33) == float(Fraction(1, 3))    # the exact share, as the docker backend packs it
    assert gpu_memory_fraction(0.125) == 0.125
    for whole_or_none in (0, 1, 2, None):                        # a whole device, or none: no cap
        assert gpu_memory_fraction(whole_or_none) is None


def test_a_trial_of_a_gpu_share_caps_cuda_memory_before_the_model_is_built(small_dataset, tmp_path, monkeypatch):
    """Through run_trial on a simulated GPU machine: torch.cuda is patched only at its boundary, and the cap
    stops the trial (as a failed row) so that nothing reaches a device this machine lacks."""
    import torch

    calls: list[tuple[float, torch.device]] = []

    def set_fraction(fraction, device=None):
        calls.append((fraction, device))
        raise RuntimeError("capped before the model was built")

    determinism = torch.get_deterministic_debug_mode()
    monkeypatch.delenv("HPT_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Simulated GPU")
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", set_fraction)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)  # configure() sets it for CUDA
    shared = make_manifest(small_dataset, "bag-of-words", epochs=1, resources={"gpus": 0.25, "cpus": 1, "memory": "2Gi"})
    assert run_trial(shared, open_store(str(tmp_path / "a"))) == 1
    assert calls == [(0.25, torch.device("cuda"))]
    row = _row(tmp_path / "a", shared.id)
    assert row["reason"] == "RuntimeError: capped before the model was built" and row["device"] == "cuda:Simulated GPU"

    calls.clear()   # a whole GPU: the trial may use all of it (here it then fails on the missing device)
    whole = make_manifest(small_dataset, "bag-of-words", epochs=1, resources={"gpus": 1, "cpus": 1, "memory": "2Gi"})
    run_trial(whole, open_store(str(tmp_path / "b")))
    assert calls == [] and "capped" not in _row(tmp_path / "b", whole.id)["reason"]
    torch.set_deterministic_debug_mode(determinism)   # configure() set CUDA's; the tests after this one run on the CPU
