"""Errors of the webhook-endpoint API."""

from __future__ import annotations

from src.core.errors import NotFound, ValidationFailed


class WebhookEndpointNotFound(NotFound):
    """No endpoint with this id in this organisation (another organisation's is the same 404)."""

    code = "webhook_endpoint_not_found"


class InvalidWebhookUrl(ValidationFailed):
    """The URL is not one events can be sent to (https, or http to localhost only)."""

    code = "invalid_webhook_url"
