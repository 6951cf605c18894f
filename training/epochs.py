"""The epoch loop the LTV and propensity networks share: train an epoch, judge it on the validation split,
keep the best weights seen, stop when validation has not improved by ``min_delta`` for ``patience`` epochs.

Only the model-specific parts are passed in (one training epoch, the validation loss), so both fits stop and
restore by exactly the same rule.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float | None


@dataclass
class EpochsRun:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None  # None without a validation split
    stopped_early: bool = False


def run_epochs(
    network: nn.Module,
    train_epoch: Callable[[], float],
    validation_loss: Callable[[], float] | None,
    *,
    max_epochs: int,
    patience: int,
    min_delta: float,
    desc: str,
    after_validation: Callable[[float], None] | None = None,
) -> EpochsRun:
    """Up to ``max_epochs`` of ``train_epoch()`` (returns the epoch's mean training loss). With a
    ``validation_loss``, the network ends with the weights of its best epoch; without, it trains every epoch.
    ``after_validation`` sees each finite validation loss (e.g. a learning-rate scheduler)."""
    from tqdm import tqdm

    run = EpochsRun()
    best_loss = patience_reference = math.inf
    best_state = copy.deepcopy(network.state_dict())
    stale = 0
    for epoch in (epochs := tqdm(range(1, max_epochs + 1), desc=desc, disable=None, leave=False)):
        network.train()
        train_loss = train_epoch()
        val_loss = validation_loss() if validation_loss is not None else None
        run.history.append(EpochRecord(epoch, train_loss, val_loss))
        epochs.set_postfix(train=f"{train_loss:.4f}", val="-" if val_loss is None else f"{val_loss:.4f}")
        if val_loss is None:
            continue
        if not math.isfinite(val_loss):
            log.warning("validation loss is not finite at epoch %d: stopping", epoch)
            run.stopped_early = True
            break
        if after_validation is not None:
            after_validation(val_loss)
        # Keep the best weights seen; only improvements beyond min_delta reset the patience.
        stale = 0 if val_loss < patience_reference - min_delta else stale + 1
        patience_reference = patience_reference if stale else val_loss
        if val_loss < best_loss:
            best_loss, run.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(network.state_dict())
        if stale >= patience:
            run.stopped_early = True
            break
    if validation_loss is None:
        run.best_epoch = len(run.history)
    else:
        network.load_state_dict(best_state)
        run.best_val_loss = best_loss if math.isfinite(best_loss) else None
    return run
