"""What every started test-stack part shares: ``with Part(...) as part`` starts it, a start that
fails half-way stops what it had started, and leaving the block stops it."""

from __future__ import annotations

from typing import Self


class Started:
    """A context manager over the subclass's ``start()`` and ``stop()``; ``stop()`` must be
    safe on a part that is not (or only partly) started."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
