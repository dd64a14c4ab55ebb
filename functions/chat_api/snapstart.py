"""SnapStart: Lambda resumes many containers from one snapshot of an initialized container.

Nothing unique, secret or connected may be shared by them. Today nothing of the kind exists
before the snapshot (clients and the key are made on first use), and the hook keeps it so if
init ever warms them up: after a restore, the clients and the cached key are dropped, to be
made again on first use, and `random` gets a seed of its own.
"""

from __future__ import annotations

import random

from chat_api.clients import reset_clients


def reset_after_restore() -> None:
    """Drop what a restored container must not share with its siblings."""
    # The clients hold connection pools and the key source the key from the secret; all were
    # made for the container that was snapshotted.
    reset_clients()
    random.seed()


def register_snapstart_hooks() -> None:
    """Run `reset_after_restore` after each restore, where the runtime offers the hook."""
    try:
        from snapshot_restore_py import register_after_restore
    except ModuleNotFoundError:  # only Lambda's Python runtime ships it; elsewhere no snapshots
        return
    register_after_restore(reset_after_restore)
