"""What a model provider can fail with, as one error the pipeline can branch on."""

from __future__ import annotations


class ProviderError(RuntimeError):
    """A provider call failed: refused, unreachable, or broken off mid-stream.

    ``kind`` is the provider's error type (``overloaded_error``, ``connection_error``, ...).
    ``retryable`` says whether the same request may succeed later; ``mid_stream`` that some
    events of the step were already yielded, so a retry must not simply repeat them.
    """

    def __init__(self, message: str, *, kind: str = "api_error", retryable: bool = False,
                 mid_stream: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.mid_stream = mid_stream
