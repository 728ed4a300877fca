"""What sft and rl share: the trainer arguments, trackers included."""

from rejuv.recipes.sft import SFTRecipeConfig
from rejuv.train.plasticity import read_plasticity_log

# -- precision ---------------------------------------------------------------------------------------


def test_report_to_reaches_trl_and_plasticity_reaches_the_trackers(tmp_path):
    from types import SimpleNamespace

    from rejuv.train.common import Precision, shared_trainer_args
    from rejuv.train.plasticity import PlasticityCallback

    cfg = SFTRecipeConfig(model="m", data="d", out="o", report_to=["tensorboard", "wandb"])
    args = shared_trainer_args(cfg, tmp_path, Precision("float32", "float32", "float32"))
    assert args["report_to"] == ["tensorboard", "wandb"]
    assert shared_trainer_args(SFTRecipeConfig(model="m", data="d", out="o"), tmp_path,
                               Precision("float32", "float32", "float32"))["report_to"] == ["none"]
    callback = PlasticityCallback(tmp_path / "p.jsonl")
    callback.pending = {"step": 1, "update_l2": 0.5, "drift_l2": 1.0, "drift_rel": 0.1, "frac_changed": 1.0,
                        "frac_changed_rel1e-5": 0.9}
    logs = {"grad_norm": 2.0, "loss": 1.0}
    callback.on_log(None, SimpleNamespace(is_world_process_zero=True), None, logs=logs)
    assert logs["plasticity/update_per_grad"] == 0.25 and logs["plasticity/drift_rel"] == 0.1
    assert read_plasticity_log(tmp_path / "p.jsonl")[0]["update_per_grad"] == 0.25


