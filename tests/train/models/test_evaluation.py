"""The trainer's checkpoint runner is what the torch-free evaluation finds through its entry point."""
from hsst.eval.embedders import checkpoint_model_class
from hsst.train.models.evaluation import CheckpointModel


def test_entry_point_names_the_trainers_checkpoint_model(tmp_path):
    assert checkpoint_model_class(tmp_path / "probe_net.pt") is CheckpointModel
