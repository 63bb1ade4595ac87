"""What a model provider can fail with, as one error the pipeline can branch on."""

from __future__ import annotations

from typing import Any


class ProviderError(RuntimeError):
    """A provider call failed: refused, unreachable, or broken off mid-stream.

    ``kind`` is the provider's error type (``overloaded_error``, ``connection_error``, ...).
    ``retryable`` says whether the same request may succeed later; ``mid_stream`` that some
    events of the step were already yielded, so a retry must not simply repeat them.
    ``status`` is the provider's HTTP status when there is one; ``provider`` names it.
    """

    def __init__(self, message: str, *, kind: str = "api_error", retryable: bool = False,
                 mid_stream: bool = False, status: int | None = None, provider: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.mid_stream = mid_stream
        self.status = status
        self.provider = provider

    def details(self) -> dict[str, Any]:
        """What the ``error`` event carries besides the message: never the request or a key."""
        return {"provider": self.provider, "kind": self.kind, "status": self.status, "retryable": self.retryable}
