"""The intent classifier: what a request asks for (the gateway's ``POST /intent/detect``, and the
worker's first step of every turn). Pure and deterministic; imports nothing above ``shared``."""

from intent.classifier import Classification, classify
from intent.vocabulary import EXECUTION, GREETING, NEUTRAL, SETUP

__all__ = ["EXECUTION", "GREETING", "NEUTRAL", "SETUP", "Classification", "classify"]
