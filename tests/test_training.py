"""Training and evaluation on a tiny EMT-labelled data set (independent labels from ASE's EMT)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from matdesign.cli import main
from matdesign.model import PotentialConfig
from matdesign.training.config import TrainConfig, load_config
from matdesign.training.data import fit_reference_energies, load_frames
from matdesign.training.trainer import train_potential

TINY = PotentialConfig(cutoff=4.0, channels=8, lmax=1, lmax_edge=1, num_layers=1, radial_hidden=8,
                       readout_hidden=8)
# The ACE-style product architecture with a 2-head trained committee.
TINY_PRODUCT = PotentialConfig(cutoff=4.0, channels=8, lmax=0, lmax_edge=2, correlation=3,
                               num_layers=1, radial_hidden=8, readout_hidden=8, heads=2)


def emt_frames(n: int = 16, seed: int = 0) -> list:
    """Rattled, strained Cu/Ni fcc cells labelled by EMT (energy, forces, stress)."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.numbers[: k % 4] = 28
        a.set_cell(a.cell * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        sp = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces(),
                                   stress=a.get_stress())
        a.calc = sp
        a.info["config_type"] = "mixed" if k % 4 else "pure"
        frames.append(a)
    return frames


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "emt.extxyz"
    write(path, emt_frames())
    return path


def test_reference_energies_exact_for_linear_energies(data_file):
    frames = load_frames(data_file, 4.0, {29: 0, 28: 1})
    e_cu, e_ni = -3.1, -4.7
    fake = [f.__class__(**{**f.__dict__, "energy": f.symbols.count("Cu") * e_cu
                           + f.symbols.count("Ni") * e_ni}) for f in frames]
    np.testing.assert_allclose(fit_reference_energies(fake, ["Cu", "Ni"]), [e_cu, e_ni], atol=1e-10)


def test_training_reduces_error_and_resumes(data_file, tmp_path):
    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=16, batch_size=4, lr=1e-2, ema_decay=0.5, patience=100,
                      threads=1, energy_weight=1.0, stress_weight=1.0)
    out = tmp_path / "m.pt"
    s = train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg, out, progress=False,
                        log_path=tmp_path / "log.jsonl")
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 16
    assert log[-1]["train_mse_forces"] < 0.2 * log[0]["train_mse_forces"]
    assert s.valid["force_mae_ev_per_a"] is not None
    # the checkpoint records the training chemistry (matdesign.domain)
    from matdesign.checkpoint import load_potential

    domain = load_potential(out).metadata["chemical_domain"]
    expected = {p for f in frames[:12] for p in ("Cu-Cu", "Cu-Ni", "Ni-Ni")
                if set(p.split("-")) <= set(f.symbols)}
    assert set(domain["pairs"]) == expected and domain["cutoff_a"] == TINY.cutoff
    # resume continues the epoch count from the saved state
    cfg2 = TrainConfig(**{**cfg.__dict__, "max_epochs": 18})
    s2 = train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg2, out, progress=False,
                         resume=out.with_name("m.pt.state"), log_path=tmp_path / "log.jsonl")
    assert s2.epochs == 18
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # only the two missing epochs were trained, continuing from the saved weights
    assert [r["epoch"] for r in log[16:]] == [17, 18]
    assert log[16]["train_mse_forces"] < 0.5 * log[0]["train_mse_forces"]


def test_domain_leaves_out_the_config_types_it_is_told_to(data_file, tmp_path):
    """Frames of ``domain_exclude_config_types`` are fitted but do not widen the recorded
    chemistry: with the Cu-Ni frames ("mixed") excluded only pure Cu's pair is in the domain,
    though the model trained on both; a type no frame has is refused before training."""
    from matdesign.checkpoint import load_potential

    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=1, batch_size=4, threads=1,
                      domain_exclude_config_types=("mixed",))
    out = tmp_path / "m.pt"
    s = train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg, out, progress=False)
    assert s.epochs == 1
    meta = load_potential(out).metadata
    assert meta["chemical_domain"]["pairs"] == ["Cu-Cu"]
    assert meta["chemical_domain"]["max_species_per_environment"] == 1
    assert meta["n_train"] == 12  # all twelve were trained on
    assert meta["train_config"]["domain_exclude_config_types"] == ["mixed"]
    typo = dataclasses.replace(cfg, domain_exclude_config_types=("mixd",))
    with pytest.raises(ValueError, match=r"domain_exclude_config_types: \['mixd'\] match no"):
        train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, typo, tmp_path / "t.pt",
                        progress=False)
    assert not (tmp_path / "t.pt").exists()
    with pytest.raises(ValueError, match="leaves no frame"):
        train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY,
                        dataclasses.replace(cfg, domain_exclude_config_types=("mixed", "pure")),
                        tmp_path / "t.pt", progress=False)
    with pytest.raises(ValueError, match="expected a list of strings"):
        TrainConfig.from_dict({"domain_exclude_config_types": "mixed"})


def test_init_fine_tunes_from_saved_weights(data_file, tmp_path):
    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=12, batch_size=4, lr=1e-2, ema_decay=0.5, patience=100,
                      threads=1, energy_weight=1.0, stress_weight=1.0)
    base = tmp_path / "base.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg, base, progress=False)
    from matdesign.checkpoint import load_potential, save_potential

    calibrated = load_potential(base)  # as benchmarks/calibrate.py leaves a model
    save_potential(calibrated, base, metadata={"uncertainty_scale": 3.0})
    one = TrainConfig(**{**cfg.__dict__, "max_epochs": 1, "lr": 1e-4})
    logs = {}
    for name, init in (("fresh", None), ("tuned", base)):
        train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, one, tmp_path / f"{name}.pt",
                        init=init, progress=False, log_path=tmp_path / f"{name}.jsonl")
        logs[name] = json.loads((tmp_path / f"{name}.jsonl").read_text())
    # the fine-tuned run starts where the base model ended, far below a fresh model,
    # and writes its own checkpoint (a fresh best score, not the base run's)
    assert logs["tuned"]["train_mse_forces"] < 0.3 * logs["fresh"]["train_mse_forces"]
    # the base's calibration describes the base: it is dropped; its settings are the history
    meta = load_potential(tmp_path / "tuned.pt").metadata
    assert "uncertainty_scale" not in meta and meta["init_from"] == str(base)
    assert meta["earlier_stages"] == [cfg.to_dict()] and meta["train_config"] == one.to_dict()
    # the base's committee (fitted around its weights) is replaced by one fitted anew around
    # the tuned weights, as attaching to the tuned single head gives it
    from matdesign.training.committee import attach_committee, without_committee

    base_model, tuned = load_potential(base), load_potential(tmp_path / "tuned.pt")
    assert base_model.config.committee and tuned.config.committee
    fresh = attach_committee(without_committee(tuned), frames[:12])
    assert torch.allclose(tuned.committee_deltas, fresh.committee_deltas, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(tuned.committee_deltas, base_model.committee_deltas, rtol=1e-2)
    with pytest.raises(ValueError, match="species"):
        train_potential(frames, frames, ["Ni", "Cu"], TINY, one, tmp_path / "x.pt", init=base,
                        progress=False)


@pytest.mark.parametrize("keep, epoch", [("best", 1), ("last", 3)])
def test_keep_last_writes_the_final_epoch(data_file, tmp_path, keep, epoch):
    from matdesign.checkpoint import load_potential

    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    # lr 0: the validation score never improves after epoch 1
    cfg = TrainConfig(max_epochs=3, batch_size=8, lr=0.0, patience=1, threads=1, keep=keep)
    s = train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg, tmp_path / "m.pt",
                        progress=False)
    assert load_potential(tmp_path / "m.pt").metadata["epoch"] == epoch
    assert s.epochs == (2 if keep == "best" else 3)  # early stopping only for "best"


def test_missing_forces_are_masked_not_dropped(tmp_path):
    frames = emt_frames(4)
    for a in frames[:2]:
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy())
    path = tmp_path / "partial.extxyz"
    write(path, frames)
    loaded = load_frames(path, 4.0, {29: 0, 28: 1})
    assert len(loaded) == 4
    assert [f.forces is None for f in loaded] == [True, True, False, False]


def test_bad_data_names_file_and_field(tmp_path):
    frames = emt_frames(2)
    frames[1].calc = SinglePointCalculator(frames[1], energy=float("nan"))
    path = tmp_path / "nan.extxyz"
    write(path, frames)
    with pytest.raises(ValueError, match=r"nan.extxyz frame 1.*energy"):
        load_frames(path, 4.0, {29: 0, 28: 1})
    write(path, emt_frames(2))
    with pytest.raises(ValueError, match=r"frame 1.*\['Ni'\] not known"):
        load_frames(path, 4.0, {29: 0})


def test_config_rejects_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(p)
    p.write_text("model:\n  chanels: 8\n")
    with pytest.raises(ValueError, match="chanels"):
        load_config(p)


def test_example_config_loads():
    model, train = load_config("examples/train_nbmotaw.yaml")
    assert model.channels == 64 and train.stress_config_type_weights["Nb_Elastic"] == 10.0
    assert model.zbl and model.isolated_reference and train.committee


#: the shipped model's training stages, in order, as the README's model card names them
SHIPPED_STAGES = ("examples/train_nbmotaw_default.yaml",
                  "examples/train_nbmotaw_default_stage2.yaml",
                  "examples/train_nbmotaw_default_stage3.yaml",
                  "examples/train_nbmotaw_default_stage4.yaml",
                  "examples/train_nbmotaw_default_stage5.yaml",
                  "examples/train_nbmotaw_default_stage6.yaml",
                  "examples/train_nbmotaw_default_stage7c.yaml")


def test_shipped_model_was_trained_with_its_documented_config():
    """The default checkpoint's architecture and the training settings of each of its stages
    are those of the configs the README names as its recipe (a retrained model shipped with a
    stale config, or with a stage more or less, fails)."""
    from matdesign.checkpoint import load_potential
    from matdesign.model import PotentialConfig

    shipped = load_potential("matdesign/models/default.pt")
    recorded = [*shipped.metadata.get("earlier_stages", []), shipped.metadata["train_config"]]
    assert len(recorded) == len(SHIPPED_STAGES)
    model_cfg = load_config(SHIPPED_STAGES[0])[0]
    for field in dataclasses.fields(PotentialConfig):
        if field.name in ("avg_num_neighbours", "avg_density", "heads", "committee"):
            continue  # measured on the data, or set when the committee is attached
        assert getattr(shipped.config, field.name) == getattr(model_cfg, field.name), field.name
    defaults = TrainConfig().to_dict()  # keys newer than the checkpoint: at their defaults
    for path, stage in zip(SHIPPED_STAGES, recorded, strict=True):
        for key, value in load_config(path)[1].to_dict().items():
            assert stage.get(key, defaults[key]) == value, (path, key)


def test_train_ensemble_and_evaluate_cli(data_file, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        "model: {cutoff: 4.0, channels: 8, lmax: 1, num_layers: 1, radial_hidden: 8,"
        " readout_hidden: 8}\ntrain: {max_epochs: 2, batch_size: 4, threads: 1,"
        " valid_fraction: 0.25}\n")
    out = tmp_path / "ens.pt"
    assert main(["train", "--data", str(data_file), "--config", str(cfg), "--out", str(out),
                 "--ensemble", "2", "--no-progress"]) == 0
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--potential", str(out), "--data", str(data_file),
                 "--json", str(report), "--plot", str(tmp_path / "parity.png")]) == 0
    metrics = json.loads(report.read_text())
    for key in ("n_frames", "energy_mae_mev_per_atom", "force_mae_ev_per_a", "stress_mae_gpa",
                "by_config_type"):
        assert key in metrics
    assert metrics["n_frames"] == 16 and set(metrics["by_config_type"]) == {"pure", "mixed"}
    assert (tmp_path / "parity.png").stat().st_size > 1000
    # independent check: the energy MAE equals what the ASE calculator gives frame by frame
    from ase.io import read

    from matdesign.calculator import load_calculator

    calc = load_calculator(str(out))
    errs = []
    for a in read(data_file, ":"):
        ref = a.get_potential_energy()
        a.calc = calc
        r = calc.calculate_batch([a])[0]
        assert "energy_std" in r and r["forces_std"].shape == (len(a), 3)
        errs.append(abs(r["energy"] - ref) / len(a))
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(1000 * np.mean(errs), rel=1e-6)


def test_product_architecture_trains_and_round_trips(data_file, tmp_path):
    from matdesign.checkpoint import load_potential

    frames = load_frames(data_file, TINY_PRODUCT.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=10, batch_size=2, lr=5e-3, ema_decay=0.5, patience=100,
                      threads=1, energy_weight=1.0, stress_weight=1.0)
    out = tmp_path / "p.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY_PRODUCT, cfg, out,
                    progress=False, log_path=tmp_path / "p.jsonl")
    log = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert log[-1]["train_mse_forces"] < 0.7 * log[0]["train_mse_forces"]
    model = load_potential(out)  # e3nn's generated constants are not part of the file
    assert model.config.correlation == 3 and model.num_heads == 2


def test_single_head_training_attaches_a_committee(data_file, tmp_path):
    from matdesign.checkpoint import load_potential

    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=2, batch_size=4, threads=1, patience=100)
    out = tmp_path / "c.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY, cfg, out, progress=False)
    model = load_potential(out)
    assert model.config.committee == 2 * TINY.readout_hidden
    no = tmp_path / "n.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], TINY,
                    TrainConfig(**{**cfg.__dict__, "committee": False}), no, progress=False)
    assert load_potential(no).config.committee == 0


def test_pair_first_stage_trains_the_pair_term_and_never_saves_a_gated_model(data_file,
                                                                             tmp_path):
    import dataclasses

    import torch

    from matdesign.checkpoint import load_potential
    from matdesign.forces import edge_vectors
    from matdesign.model import Potential
    from matdesign.training.metrics import error_metrics

    config = dataclasses.replace(TINY, element_pairs=True)
    frames = load_frames(data_file, config.cutoff, {29: 0, 28: 1})
    # With the gate off the energy does not depend on the network's weights at all.
    model = Potential(config, ["Cu", "Ni"]).double()
    graph = frames[0].graph.to("cpu", torch.float64)
    vectors = edge_vectors(graph, graph.positions, graph.cell)
    with torch.no_grad():
        model.element_pairs.weights.normal_(std=0.1)
        energies = []
        for gate in (0.0, 0.0, 1.0):
            model.network_gate.fill_(gate)
            energies.append(float(model(graph, vectors).sum()))
            model.heads[0][2].weight.add_(0.5)  # change the network between evaluations
    assert energies[1] == pytest.approx(energies[0], abs=1e-12)
    assert abs(energies[2] - energies[0]) > 1e-3

    cfg = TrainConfig(max_epochs=4, batch_size=4, threads=1, patience=100, lr=5e-3,
                      pair_first_fraction=0.5, max_time_min=None, committee=False)
    out = tmp_path / "pf.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], config, cfg, out, progress=False)
    saved = load_potential(out, dtype="float64")
    assert saved.metadata["epoch"] >= 3  # epochs 1-2 ran with the network off
    assert float(saved.network_gate) == 1.0
    assert saved.element_pairs.weights.abs().max() > 1e-4  # the pair term was fitted
    # The stored validation errors are those of the model as it loads (network on).
    metrics, _ = error_metrics(saved, frames[12:])
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(
        saved.metadata["valid"]["energy_mae_mev_per_atom"], rel=1e-3)
    with pytest.raises(ValueError, match="pair_first_fraction"):
        TrainConfig(pair_first_fraction=1.0).validate()


def _pair_term_step(data_file, factor: float) -> tuple[float, bool]:
    """One epoch past the pair-first stage with ``pair_lr_factor`` = factor: how far the pair
    terms moved (largest |Δw|) and whether the network moved."""
    import time

    from matdesign.training.trainer import Fit, _Budget, build_model, train_one_epoch

    config = dataclasses.replace(TINY, element_pairs=True, chemical_pairs=True)
    frames = load_frames(data_file, config.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(batch_size=4, threads=1, lr=5e-3, lr_min_fraction=1.0, committee=False,
                      pair_first_fraction=0.5, pair_lr_factor=factor, max_time_min=1.0)
    torch.manual_seed(0)
    model = build_model(config, ["Cu", "Ni"], frames, {})
    with torch.no_grad():
        for p in (model.element_pairs.weights, model.chemical_pairs.weights):
            p.normal_(std=0.05)
    pairs = torch.cat([model.element_pairs.weights.detach().flatten(),
                       model.chemical_pairs.weights.detach().flatten()])
    readout = model.heads[0][2].weight.detach().clone()
    fit = Fit.start(model, cfg)
    # the clock is past the pair stage: every step trains the network
    budget = _Budget(steps_per_epoch=4, total_steps=4, t0=time.time() - 3600.0)
    train_one_epoch(fit, frames, cfg, budget, np.random.default_rng(0), "cpu", progress=False)
    assert float(model.network_gate) == 1.0
    after = torch.cat([model.element_pairs.weights.detach().flatten(),
                       model.chemical_pairs.weights.detach().flatten()])
    return float((after - pairs).abs().max()), not torch.equal(model.heads[0][2].weight, readout)


def test_pair_lr_factor_slows_or_keeps_the_pair_terms(data_file):
    """``pair_lr_factor`` 0 keeps the pair terms as the pair stage left them (weight decay
    included) while the network trains; 0.1 moves them far less than 1 (Adam's steps scale
    with the learning rate)."""
    moved = {f: _pair_term_step(data_file, f) for f in (0.0, 0.1, 1.0)}
    assert all(net for _, net in moved.values())  # the network trained in every case
    assert moved[0.0][0] == 0.0
    assert 0.0 < moved[0.1][0] < 0.5 * moved[1.0][0]
    with pytest.raises(ValueError, match="pair_lr_factor"):
        TrainConfig(pair_lr_factor=-0.5).validate()
    with pytest.raises(ValueError, match="pair_lr_factor"):
        TrainConfig(pair_lr_factor=0.0).validate()  # no pair stage: the terms stay zero
    from matdesign.training.trainer import Fit, build_model

    frames = load_frames(data_file, TINY.cutoff, {29: 0, 28: 1})
    plain = build_model(TINY, ["Cu", "Ni"], frames, {})  # no pair terms to slow
    with pytest.raises(ValueError, match="pair_lr_factor applies to pair terms"):
        Fit.start(plain, TrainConfig(pair_lr_factor=0.1, committee=False))


def test_pair_first_stage_leaves_the_learning_rate_alone(data_file, tmp_path):
    """Epochs with the network off never count towards the plateau rule: with patience 1 and
    two pair-only epochs, the old trainer had quartered the network's learning rate before
    its first epoch (the seventh session's element-pair retrain trained at half its rate)."""
    import dataclasses

    import torch

    config = dataclasses.replace(TINY, element_pairs=True)
    frames = load_frames(data_file, config.cutoff, {29: 0, 28: 1})
    cfg = TrainConfig(max_epochs=3, batch_size=4, threads=1, patience=100, lr=5e-3,
                      pair_first_fraction=0.6, plateau_patience=1, max_time_min=None,
                      committee=False)
    out = tmp_path / "pf.pt"
    train_potential(frames[:12], frames[12:], ["Cu", "Ni"], config, cfg, out, progress=False)
    state = torch.load(out.with_name(out.name + ".state"), weights_only=True)
    assert state["epoch"] == 3
    assert state["plateau_factor"] == 1.0  # epoch 3 (network on) improved on nothing: no cut


def test_optional_config_keys_accept_null(tmp_path):
    """``max_time_min: null`` means no wall-clock limit (as documented), not a type error;
    null stays an error where the key is not optional."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {max_time_min: null}\n")
    assert load_config(cfg)[1].max_time_min is None
    cfg.write_text("train: {lr: null}\n")
    with pytest.raises(ValueError, match="train.lr"):
        load_config(cfg)
