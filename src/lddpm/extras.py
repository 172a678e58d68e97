"""Optional dependencies (pip extras), imported where they are used, with the install hint.

    train = ["tensorboard"]    `lddpm train` logs to TensorBoard
"""

from __future__ import annotations

from lddpm.errors import UserError


def summary_writer(log_dir: str):
    """torch's TensorBoard `SummaryWriter(log_dir)`, or a UserError naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError when the tensorboard package is absent
        raise UserError(
            "training logs to TensorBoard, which is not installed: pip install 'lddpm[train]'"
        ) from None
    return SummaryWriter(log_dir)
