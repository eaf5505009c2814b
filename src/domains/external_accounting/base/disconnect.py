"""The seam between the provider-neutral connections service and a provider's own
disconnect steps (XeroDisconnectService implements it); `IntegrationFactory.get_disconnect_flow`
picks the implementation for a connection's provider."""

from __future__ import annotations

from typing import Protocol

from src.domains.external_accounting.connections.models import Connection


class DisconnectFlow(Protocol):
    """A provider's steps of disconnecting, in the order the connections service runs them."""

    async def leave(self, connection: Connection) -> None:
        """Delete the connection at the provider (best effort), before any local write, so no
        database lock is held across the call."""
        ...

    async def forget(self, connection: Connection) -> None:
        """Disconnect here, in the caller's transaction: erase the connection's tokens and queue
        the revocation of its token set once nothing else uses it."""
        ...

    async def send_queued_revocations(self) -> None:
        """Send the revocations this flow queued; only once the caller's transaction committed."""
        ...
