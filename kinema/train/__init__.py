"""Training: one loop for every kinema model, checkpoints that never pickle, torchrun DDP or FSDP.

  TrainConfig                  the knobs, saved as train_config.json in every checkpoint
  Trainer(...).fit()           train (resuming automatically) and export OUT/final/
  save_pretrained / load_pretrained / load_state_strict
                               the config.json + model.safetensors folders that ship
  init_distributed             (rank, world_size, local_rank, device) under torchrun or not
"""

from kinema.train.checkpoint import CheckpointError, load_pretrained, load_state_strict, save_pretrained
from kinema.train.config import TrainConfig
from kinema.train.distributed import cleanup_distributed, init_distributed
from kinema.train.trainer import EMA, LossFn, Trainer, learning_rate, unwrap

__all__ = [
    "EMA",
    "CheckpointError",
    "LossFn",
    "TrainConfig",
    "Trainer",
    "cleanup_distributed",
    "init_distributed",
    "learning_rate",
    "load_pretrained",
    "load_state_strict",
    "save_pretrained",
    "unwrap",
]
