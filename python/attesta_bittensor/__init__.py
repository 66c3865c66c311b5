"""attesta's Bittensor synapses, for Python validators talking to an `attesta axon`.

The names and fields are fixed by the Rust axon (crates/bittensor, docs/PROTOCOL.md):

- ``TeeAttestation``: request ``nonce`` (hex, 16..=64 bytes); response ``platform``,
  ``evidence`` (base64 of the node's evidence) and ``keyset`` (dict). Verify the evidence
  yourself: the axon's host is not trusted.
- ``TeeInference``: request ``sealed_request`` (base64 of a ``/v1/infer`` request
  envelope); response ``sealed_response`` (base64 of the sealed answer, which only the
  sender can open).
- ``TeeCompletion`` / ``TeeChatCompletion``: request ``sealed_request`` (base64 of a sealed
  ``/v1/completions`` / ``/v1/chat/completions`` request envelope); response
  ``sealed_stream`` (base64 of the node's whole sealed stream: a synapse answers once, so
  the stream arrives when the node has finished it) or, for the node's verdict before the
  first token, ``sealed_response`` (base64 of one sealed envelope). Only the sender can
  open either; verify the receipt at the stream's end.

Works with bittensor 7.2.0 through 10.5.0 (the last SDK with axon/dendrite).
"""

from typing import ClassVar, Optional, Tuple

import bittensor as bt

__all__ = ["TeeAttestation", "TeeInference", "TeeCompletion", "TeeChatCompletion"]


class TeeAttestation(bt.Synapse):
    """Ask a node, through its axon, for evidence bound to a fresh nonce."""

    nonce: str
    platform: Optional[str] = None
    evidence: Optional[str] = None
    keyset: Optional[dict] = None

    required_hash_fields: ClassVar[Tuple[str, ...]] = ("nonce",)

    def deserialize(self) -> Optional[dict]:
        if self.evidence is None:
            return None
        return {"platform": self.platform, "evidence": self.evidence, "keyset": self.keyset}


class TeeInference(bt.Synapse):
    """Relay one sealed request to a node's enclave and carry its sealed answer back."""

    sealed_request: str
    sealed_response: Optional[str] = None

    required_hash_fields: ClassVar[Tuple[str, ...]] = ("sealed_request",)

    def deserialize(self) -> Optional[str]:
        return self.sealed_response


class TeeCompletion(bt.Synapse):
    """Relay one sealed ``/v1/completions`` request and carry the node's sealed stream back whole."""

    sealed_request: str
    sealed_stream: Optional[str] = None
    sealed_response: Optional[str] = None

    required_hash_fields: ClassVar[Tuple[str, ...]] = ("sealed_request",)

    def deserialize(self) -> Optional[str]:
        return self.sealed_stream if self.sealed_stream is not None else self.sealed_response


class TeeChatCompletion(TeeCompletion):
    """``TeeCompletion`` for ``/v1/chat/completions``."""
