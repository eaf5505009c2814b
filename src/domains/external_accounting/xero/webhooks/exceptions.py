"""Errors of Xero webhook deliveries that are signed by Xero's key yet cannot be ours."""

from __future__ import annotations

from src.core.errors import BadRequest, LedgersyncError, ServiceUnavailable


class WebhookPayloadInvalid(BadRequest):
    """The delivery is signed but is not a batch of Xero webhook events."""

    code = "invalid_webhook_payload"


class WebhookPayloadTooLarge(LedgersyncError):
    """The delivery is larger than WEBHOOK_MAX_BODY_BYTES."""

    code = "webhook_payload_too_large"
    status_code = 413


class JobQueueUnavailable(ServiceUnavailable):
    """The events were stored but their job could not be queued; Xero delivers again."""

    code = "job_queue_unavailable"
