"""One progress bar per phase: what a run reports, counted independently."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from audit.data.dataset import open_dataset
from audit.data.synthetic import make_synthetic
from audit.models.loader import load_classifier
from audit.pipeline import RunConfig, run_audit
from audit.progress import RichPhases
from audit.stages.randomisation import execution_order

SAMPLE_MODELS = Path(__file__).resolve().parents[1] / "sample_models"


def test_a_run_reports_auditing_then_the_randomisation_steps(tmp_path) -> None:
    valid = make_synthetic(tmp_path / "data", seed=4, n_train=2, n_valid=10, n_test=2) / "valid"
    classifier = load_classifier(SAMPLE_MODELS / "biased.onnx")
    dataset = open_dataset(valid / "images", size=(28, 28), channels=1)
    classifier.class_names = list(dataset.classes)
    progress = Progress(disable=True)
    run_audit(classifier, dataset, RunConfig(methods=["gradient", "grad-cam"], randomization_images=3, batch_size=4),
              tmp_path / "out", RichPhases(progress))
    tasks = {task.description: task for task in progress.tasks}
    assert list(tasks) == ["auditing", "randomisation check"]
    assert tasks["auditing"].total == tasks["auditing"].completed == 10
    x = classifier.to_input(next(iter(dataset.batches(1))).images)
    layers = {name: len(execution_order(module, x)[0])
              for name, module in (("gradient", classifier.differentiable), ("grad-cam", classifier.layered))}
    expected = 2 * sum(layers.values())  # one cascading and one independent step per layer and method
    assert tasks["randomisation check"].total == tasks["randomisation check"].completed == expected


def test_the_cost_line_goes_to_the_progress_console_unless_quiet(tmp_path) -> None:
    from io import StringIO

    from rich.console import Console

    valid = make_synthetic(tmp_path / "data", seed=4, n_train=2, n_valid=4, n_test=2) / "valid"
    classifier = load_classifier(SAMPLE_MODELS / "biased.onnx")
    dataset = open_dataset(valid / "images", size=(28, 28), channels=1)
    classifier.class_names = list(dataset.classes)
    config = RunConfig(methods=["integrated-gradients"], randomization_images=0, method_options={"integrated-gradients": {"n_steps": 120}})
    for disable in (False, True):
        printed = StringIO()
        progress = Progress(console=Console(file=printed, width=300), disable=disable)
        run_audit(classifier, dataset, config, tmp_path / f"out{disable}", RichPhases(progress))
        line = "audit: this run takes about 480 model passes: 480 for 4 images (integrated-gradients 120 passes per image)"
        assert (line in printed.getvalue()) != disable, printed.getvalue()
