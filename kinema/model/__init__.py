"""The Mixture-of-Transformers world model: backbone, adapters, tasks, training and generation."""

from kinema.eval.predictor import register_model_loader
from kinema.model.config import KIND


def _load_predictor(path, **options):
    from kinema.model.predictor import load_predictor  # torch-heavy: only when a checkpoint is asked for

    return load_predictor(path, **options)


register_model_loader(KIND, _load_predictor)
