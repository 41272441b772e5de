"""tqdm bars over epochs and over the batches of each epoch (refreshed a few dozen times an epoch)."""

from __future__ import annotations

from typing import Any

from flatnet_xp.history import History

__all__ = ["Progress"]


class Progress:
    """The bars of one ``fit`` (nothing at all when disabled)."""

    def __init__(self, enabled: bool, epochs: int, first_epoch: int, n_batches: int) -> None:
        self.enabled = enabled
        self.stride = max(1, n_batches // 40)
        if enabled:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.outer = tqdm(total=epochs, initial=first_epoch, desc="epochs", unit="epoch")
            self.inner: Any = None
            self.n_batches = n_batches

    def start_epoch(self, epoch: int) -> None:
        if self.enabled:
            self.inner = self._tqdm(total=self.n_batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False)

    def batches(self, done: int, running_loss: float | None) -> None:
        if self.enabled:
            self.inner.update(done - self.inner.n)
            if running_loss is not None:
                self.inner.set_postfix(loss=f"{running_loss:.4g}", refresh=False)

    def end_epoch(self, history: History) -> None:
        if self.enabled:
            if self.inner is not None:
                self.inner.close()
            post = {"loss": f"{history.loss[-1]:.4g}"}
            if history.val_loss:
                post["val_loss"] = f"{history.val_loss[-1]:.4g}"
            self.outer.set_postfix(post, refresh=False)
            self.outer.update(1)

    def close(self) -> None:
        if self.enabled:
            if self.inner is not None:
                self.inner.close()
            self.outer.close()
