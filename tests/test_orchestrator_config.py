"""Sweep config, presets, dry-run counts, GPU rule, and bad input (exit 2 before Ray starts)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator import sweep as S
from orchestrator.config import ConfigError, expand_trials, load_config
from orchestrator.resources import check_capacity, gpu_fraction_rule, trial_resources

# --- the paper's numbers, typed in from Appendix G / H / I (independent of the presets) -------
MNIST_P = [89, 188, 375, 750, 1500, 3000, 6000, 12000, 24000, 30000, 36000, 42000, 48000]
CIFAR_RESNET_VIT_P = list(range(6000, 46001, 5000))  # "from 6000 to 46000 every 5000"
CIFAR_CNN_P = list(range(4000, 48001, 4000))  # "from 4000 to 48000 every 4000"
SEEDS = 30  # "a maximum number of 30 repetitions"


def test_paper_table1_counts_appendix_g():
    expected = SEEDS * (
        3 * len(MNIST_P)  # CNN, ResNet, ViT on MNIST
        + 2 * 2 * len(CIFAR_RESNET_VIT_P)  # ResNet, ViT on CIFAR10/100
        + 2 * len(CIFAR_CNN_P)  # CNN on CIFAR10/100
    )
    trials = expand_trials(load_config("paper-table1"))
    assert len(trials) == expected == 2970
    by = {}
    for t in trials:
        by.setdefault((t["model"], t["dataset"]), set()).add(t["P"])
    assert by[("paper-vit", "mnist")] == set(MNIST_P)
    assert by[("paper-resnet", "cifar100")] == set(CIFAR_RESNET_VIT_P)
    assert by[("paper-cnn", "cifar10")] == set(CIFAR_CNN_P)
    assert {t["seed"] for t in trials} == set(range(SEEDS))
    # Appendix G: epochs and optimizers per model, lr 1e-3
    spec = {(t["model"], t["epochs"], t["optimizer"], t["lr"]) for t in trials}
    assert spec == {
        ("paper-cnn", 500, "adam", 1e-3),
        ("paper-resnet", 1000, "adam", 1e-3),
        ("paper-vit", 1000, "adamw", 1e-3),
    }
    # the authors' training augmentation where their script uses it (ResNet; ViT on MNIST)
    aug = {(t["model"], t["dataset"]) for t in trials if t["augment"]}
    assert aug == {
        ("paper-resnet", "mnist"),
        ("paper-resnet", "cifar10"),
        ("paper-resnet", "cifar100"),
        ("paper-vit", "mnist"),
    }
    assert {t["norms"] for t in trials} == {"both"}


def test_paper_weight_decay_and_sgd_grids():
    wd = expand_trials(load_config("paper-weight-decay"))
    table3 = {
        "paper-cnn": {1e-3, 1e-4, 1e-5},
        "paper-vit": {1e-3, 1e-4, 1e-5},
        "paper-resnet": {1e-6, 1e-7, 1e-8},
    }
    for model, wds in table3.items():
        assert {t["weight_decay"] for t in wd if t["model"] == model} == wds
    assert {t["dataset"] for t in wd} == {"cifar10"}
    assert {t["P"] for t in wd} == set(CIFAR_RESNET_VIT_P)
    assert len(wd) == 3 * 3 * len(CIFAR_RESNET_VIT_P) * SEEDS
    sgd = expand_trials(load_config("paper-sgd"))
    assert {(t["model"], t["optimizer"]) for t in sgd} == {("paper-cnn", "sgd")}
    assert {t["dataset"] for t in sgd} == {"cifar10", "cifar100"}


def test_dry_run_prints_count_and_starts_nothing(capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", _no_ray)
    assert S.main(["--config", "paper-table1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2970 trials" in out and "GPU-hours" in out and "0.25 GPU" in out
    assert "cost model assumptions" in out


def test_default_preset_and_overrides():
    cfg = load_config(None, ["seeds=[7]", "blocks.0.alpha=[2, 3]", "trial.epochs=50"])
    trials = expand_trials(cfg)
    assert cfg.name == "perceptron"
    # block 0 (alpha = 5 in the preset) overridden; one block per further alpha, each with its
    # own lambda_stop (issue 10)
    assert [(t["alpha"], t["seed"], t["epochs"]) for t in trials[:2]] == [(2, 7, 50), (3, 7, 50)]
    assert len(trials) == 12 and trials[0]["lambda_stop"] == trials[1]["lambda_stop"] == 13.6
    assert max(t["alpha"] for t in trials) >= 128 and all(t["lambda_stop"] for t in trials)
    assert all(t["P"] == round(t["alpha"] * t["N"]) for t in trials)
    assert cfg.theory.enabled  # perceptron sweeps log the theory run


def test_gpu_rule_and_cpu_fallback():
    res = load_config("digits-cnn").resources
    assert gpu_fraction_rule("cnn", 4000) == 1 / 8 and gpu_fraction_rule("vit", 46000) == 1 / 2
    deep = {"kind": "deep", "model": "resnet", "P": 48000}
    assert trial_resources(deep, res, cluster_has_gpu=True) == {"CPU": 1.0, "GPU": 0.5}
    assert trial_resources(deep, res, cluster_has_gpu=False) == {"CPU": 1.0, "GPU": 0.0}
    perc = {"kind": "perceptron", "model": "perceptron", "P": 100}
    assert trial_resources(perc, res, cluster_has_gpu=True)["GPU"] == 0.0
    for s in 1 / 16 + 1 / 16, 1 / 3, 1.0, 2.0:
        load_config("digits-cnn", [f"resources.gpu={s}"])  # each divides 1 (or is whole)


def test_capacity_check_refuses_what_no_node_holds():
    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    check_capacity([{"CPU": 4.0, "GPU": 0.25}, {"CPU": 1.0, "GPU": 1.0}], nodes)
    with pytest.raises(ConfigError, match="resources.gpu.*largest node: 8 CPU, 1 GPU"):
        check_capacity([{"CPU": 1.0, "GPU": 2.0}], nodes)
    with pytest.raises(ConfigError, match="resources.cpus_per_trial"):
        check_capacity([{"CPU": 16.0, "GPU": 0.0}], nodes)


# --- bad input: exit 2, one line naming the field, Ray never started -------------------------


def _no_ray(*a, **k):
    raise AssertionError("Ray must not start on bad input")


BAD = [
    ("seeds: [0\nblocks: [", [], "malformed YAML"),
    ("name: x\nblocks: [{kind: deep, P: [10]}]\nbogus: 1\n", [], "bogus"),
    ("name: x\nblocks: [{kind: deep, P: [10], colour: red}]\n", [], "blocks.0.colour"),
    ("name: x\nseeds: abc\nblocks: [{P: [10]}]\n", [], "seeds"),
    ("name: x\nblocks: [{P: []}]\n", [], "blocks.0.P: empty"),
    ("name: x\nblocks: []\n", [], "blocks"),
    ("name: x\nblocks: [{datasets: [mnist], P: [70000]}]\n", [], "P: 70000 exceeds"),
    ("name: x\nblocks: [{kind: perceptron, alpha: [-1]}]\n", [], "alpha"),
    ("name: x\nblocks: [{P: [10]}]\nresources: {gpu: 0.3}\n", [], "resources.gpu"),
    ("name: x\nblocks: [{P: [10]}]\ntheory: {lambdas: [0, 1]}\n", [], "theory.lambdas"),
    (
        "name: x\nblocks: [{P: [10]}]\n",
        ["mlflow.tracking_uri=http://127.0.0.1:9"],
        "mlflow.tracking_uri",
    ),
    (
        "name: x\nblocks: [{P: [10]}]\n",
        ["mlflow.tracking_uri=sqlite:////nonexistent/dir/m.db"],
        "mlflow.tracking_uri",
    ),
    ("name: x\nblocks: [{P: [10]}]\n", ["noequals"], "--set"),
    ("name: x\nblocks: [{P: [10]}]\n", ["trial.epochs=ten"], "epochs"),
]


@pytest.mark.parametrize("text,sets,needle", BAD)
def test_bad_input_exits_2_with_one_line(text, sets, needle, tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    argv = ["--config", str(path)] + [a for s in sets for a in ("--set", s)]
    assert S.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert needle in err


def test_missing_config_file(capsys):
    assert S.main(["--config", "/nonexistent/sweep.yaml", "--dry-run"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_cli_help_and_exit_code_from_a_real_process(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--dry-run" in out and "--resume" in out and "--address" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblocks: [{P: [10]}]\nresources: {gpu: 0.3}\n")
    r = subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "divide 1" in r.stderr


def test_resume_guards_exit_2_before_ray(tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", _no_ray)
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: s\nblocks: [{P: [10]}]\ntune: {storage_path: rr}\n")
    assert S.main(["--config", str(cfg), "--resume"]) == 2
    assert "no sweep to resume" in capsys.readouterr().err
    (tmp_path / "rr" / "s").mkdir(parents=True)
    (tmp_path / "rr" / "s" / S.STATE_FILE).write_text('{"fingerprint": "another-grid"}')
    assert S.main(["--config", str(cfg)]) == 2
    assert "a different sweep called 's'" in capsys.readouterr().err


def test_paper_norms_preset_and_cost_model():
    from orchestrator.resources import epoch_seconds

    trials = expand_trials(load_config("paper-norms"))  # App. J: CIFAR10, 3 nets, 9 P, 30 seeds
    assert len(trials) == 3 * len(CIFAR_RESNET_VIT_P) * SEEDS
    assert {t["dataset"] for t in trials} == {"cifar10"} and {t["norms"] for t in trials} == {
        "both"
    }
    # paper-* cost: 3 forward passes per training sample + one per evaluated image (the P
    # training and 10000 test images at each of the 50 logged epochs), V100 fp32 at 30%
    p = {"kind": "deep", "model": "paper-cnn", "dataset": "mnist", "P": 1000, "epochs": 500}
    fwd = 84.0e6 / (15.7e12 * 0.3)
    want = 3 * fwd * 1000 + fwd * (1000 + 10000) * 50 / 500
    assert epoch_seconds(p, 50, {}) == pytest.approx(want)
    # ResNet-34 on CIFAR100 costs ~40x the MNIST ResNet per sample
    big = epoch_seconds({**p, "model": "paper-resnet", "dataset": "cifar100"}, 50, {})
    small = epoch_seconds({**p, "model": "paper-resnet", "dataset": "mnist"}, 50, {})
    assert 35 < big / small < 45


def test_trial_names_come_from_parameters_and_are_unique():
    from orchestrator.config import applicable_params, parse_config, trial_key, trial_names

    cfg = parse_config(
        {
            "name": "n",
            "seeds": [3],
            "blocks": [
                {"kind": "perceptron", "alpha": [32, 0.5], "N": [256]},
                {"models": ["cnn"], "datasets": ["mnist"], "P": [1000], "weight_decays": [0, 1e-4]},
                {"models": ["paper-vit"], "datasets": ["cifar10"], "P": [500]},
            ],
        }
    )
    trials = expand_trials(cfg)
    names = trial_names(trials)
    assert sorted(names.values()) == [
        "cnn-mnist-P1000-s3-wd0",
        "cnn-mnist-P1000-s3-wd0.0001",
        "paper-vit-cifar10-P500-s3",
        "perceptron-a0.5-N256-s3",
        "perceptron-a32-N256-s3",
    ]
    by_name = {names[trial_key(p)]: p for p in trials}
    perc = applicable_params(by_name["perceptron-a32-N256-s3"])
    assert {"alpha", "N", "step_rule"} <= set(perc)
    assert not {"batch_size", "weight_decay"} & set(perc)
    assert not any(k.startswith(("cnn_", "resnet_", "vit_")) for k in perc)
    cnn = applicable_params(by_name["cnn-mnist-P1000-s3-wd0.0001"])
    assert "cnn_channels" in cnn and "weight_decay" in cnn and "alpha" not in cnn
    assert not any(k.startswith(("resnet_", "vit_")) for k in cnn) and "momentum" not in cnn
    vit = applicable_params(by_name["paper-vit-cifar10-P500-s3"])
    assert not any(k.startswith(("cnn_", "resnet_", "vit_")) for k in vit)  # fixed paper nets
    # two trials that differ only in a field outside the name still get distinct names
    same = [dict(trials[0]), {**trials[0], "lr": 0.5}]
    assert len(set(trial_names(same).values())) == 2


@pytest.mark.parametrize(("argv", "level"), [([], 0), (["-v"], 1), (["-vv"], 2), (["-v", "0"], 0)])
def test_verbosity_flags(argv, level):
    assert S.build_parser().parse_args(argv).verbose == level


def test_bad_verbosity_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        S.build_parser().parse_args(["-v", "7"])
    assert e.value.code == 2


def test_wall_clock_is_the_work_spread_over_the_slots_the_nodes_hold():
    from orchestrator.resources import DEEP_CPU_SLOWDOWN, epoch_seconds, wall_clock

    p = {"kind": "deep", "model": "cnn", "dataset": "digits", "P": 400, "epochs": 10}
    work_h = 10 * epoch_seconds(p, 5, {}) / 3600  # GPU-hours of one trial
    trials, logged = [p] * 8, [5] * 8
    gpu = [{"CPU": 1.0, "GPU": 0.125}] * 8
    # one GPU, 8 CPUs: all eight share it, each gets 1/8: the GPU's total work
    hours, packing = wall_clock(trials, gpu, logged, {}, [{"CPU": 8.0, "GPU": 1.0}])
    assert hours == pytest.approx(8 * work_h) and packing == [("1 CPU + 0.125 GPU", 8, 8)]
    # only 2 CPUs: two at once, four waves of two trials each holding 1/8 GPU
    hours, _ = wall_clock(trials, gpu, logged, {}, [{"CPU": 2.0, "GPU": 1.0}])
    assert hours == pytest.approx(4 * 8 * work_h)
    # no GPU: on the CPU, 3 cores -> ceil(8/3) = 3 waves, max_concurrent 2 -> 4 waves
    cpu = [{"CPU": 1.0, "GPU": 0.0}] * 8
    hours, _ = wall_clock(trials, cpu, logged, {}, [{"CPU": 3.0, "GPU": 0.0}])
    assert hours == pytest.approx(3 * work_h * DEEP_CPU_SLOWDOWN)
    hours, _ = wall_clock(trials, cpu, logged, {}, [{"CPU": 3.0, "GPU": 0.0}], max_concurrent=2)
    assert hours == pytest.approx(4 * work_h * DEEP_CPU_SLOWDOWN)
    hours, _ = wall_clock(trials, gpu, logged, {}, [{"CPU": 8.0, "GPU": 0.0}])
    assert hours == float("inf")  # no node holds a GPU trial


def test_dry_run_prints_the_grid_and_a_wall_clock(capsys):
    assert S.main(["--config", "digits-cnn", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grid cnn/digits: P: 100, 200, 400, 800, 1397; seeds: 0, 1, 2, 3, 4, 5" in out
    assert "estimated wall clock: " in out and "packing on this machine" in out
    assert S.main(["--dry-run"]) == 0  # the perceptron preset: alpha and N, not P
    out = capsys.readouterr().out
    assert "grid perceptron/teacher: alpha: 5, 7, 10, ..., 160 (11 values); N: 128" in out
