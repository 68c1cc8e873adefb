"""Webhooks: where the service POSTs job events, and the record of each delivery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelpress_client._base import Base
from modelpress_client.types import Page, Webhook, WebhookDelivery

WEBHOOK_EVENTS = ("job.running", "job.succeeded", "job.failed", "job.cancelled", "job.progress")


class WebhooksMixin(Base):
    def create_webhook(
        self, url: str, *, events: list[str] | None = None, description: str | None = None
    ) -> Webhook:
        """Register a URL; the answer's ``secret`` (whsec_…), which signs the deliveries,
        is shown only here. ``events`` default: every job event but ``job.progress``."""
        body: dict[str, Any] = {"url": url, "description": description}
        if events is not None:
            body["events"] = list(events)
        return Webhook.from_dict(self._t.json("POST", "/v1/webhooks", json=body))

    def get_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.from_dict(self._t.json("GET", f"/v1/webhooks/{webhook_id}"))

    def list_webhooks(self, *, limit: int = 20, after: str | None = None) -> Page[Webhook]:
        return self._page("/v1/webhooks", Webhook.from_dict, {"limit": limit, "after": after})

    def iter_webhooks(self, *, page_size: int = 100) -> Iterator[Webhook]:
        return self._iterate("/v1/webhooks", Webhook.from_dict, {"limit": page_size})

    def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> Webhook:
        """Change what is given; ``enabled=True`` turns a disabled webhook back on."""
        body = {
            k: v
            for k, v in {
                "url": url,
                "events": events,
                "description": description,
                "enabled": enabled,
            }.items()
            if v is not None
        }
        # Setting the same fields twice gives the same webhook: safe to retry.
        data = self._t.json("PATCH", f"/v1/webhooks/{webhook_id}", json=body, idempotent=True)
        return Webhook.from_dict(data)

    def delete_webhook(self, webhook_id: str) -> None:
        self._t.send("DELETE", f"/v1/webhooks/{webhook_id}")

    def list_deliveries(
        self, webhook_id: str, *, limit: int = 20, after: str | None = None
    ) -> Page[WebhookDelivery]:
        return self._page(
            f"/v1/webhooks/{webhook_id}/deliveries",
            WebhookDelivery.from_dict,
            {"limit": limit, "after": after},
        )

    def iter_deliveries(
        self, webhook_id: str, *, page_size: int = 100
    ) -> Iterator[WebhookDelivery]:
        path = f"/v1/webhooks/{webhook_id}/deliveries"
        return self._iterate(path, WebhookDelivery.from_dict, {"limit": page_size})

    def resend_delivery(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """Queue the delivery again (it is ``pending`` until it is sent)."""
        data = self._t.json("POST", f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/resend")
        return WebhookDelivery.from_dict(data)
