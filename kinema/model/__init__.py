"""The Mixture-of-Transformers world model: backbone, adapters, tasks, training and generation."""

from kinema.eval.judge import register_judge_loader
from kinema.eval.policy import register_policy_loader
from kinema.eval.predictor import register_model_loader
from kinema.model.ar_config import KIND as AR_KIND
from kinema.model.config import KIND


def _load_predictor(path, **options):
    from kinema.model.predictor import load_predictor  # torch-heavy: only when a checkpoint is asked for

    return load_predictor(path, **options)


def _load_ar_predictor(path, **options):
    from kinema.model.ar_predictor import load_predictor

    return load_predictor(path, **options)


def _load_judge(path, **options):
    from kinema.model.reasoner import load_judge

    return load_judge(path, **options)


def _load_ar_judge(path, **options):
    from kinema.model.ar_predictor import load_judge

    return load_judge(path, **options)


def _load_policy(path, **options):
    from kinema.model.policy import load_policy

    return load_policy(path, **options)


register_model_loader(KIND, _load_predictor)
register_model_loader(AR_KIND, _load_ar_predictor)
register_judge_loader(KIND, _load_judge)
register_judge_loader(AR_KIND, _load_ar_judge)
register_policy_loader(KIND, _load_policy)
