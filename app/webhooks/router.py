from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from app.deps import CurrentTenant, SessionDep, SettingsDep
from app.errors import problem_responses
from app.pagination import AfterQuery, LimitQuery, Page
from app.webhooks import service
from app.webhooks.schemas import (
    EXAMPLE_WEBHOOK,
    AttemptRead,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from app.webhooks.tables import Webhook, WebhookAttempt, WebhookDelivery

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=problem_responses(401, 403))


def _read(row: Webhook) -> WebhookRead:
    return WebhookRead.model_validate(row, from_attributes=True)


def _delivery(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        webhook_id=row.webhook_id,
        event_type=row.event_type,
        event_id=row.event_id,
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        attempts=[AttemptRead.model_validate(a, from_attributes=True) for a in attempts],
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        payload=row.payload,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses=problem_responses(400, 415, 422),
    summary="Register a webhook",
    description="Job events of this tenant are POSTed to `url`, signed with the secret that "
    "only this response shows (`Modelpress-Signature: t=<unix>,v1=<HMAC-SHA256 of "
    '"<t>.<body>">`), with a `Modelpress-Delivery-Id` to de-duplicate on. Deliveries are '
    "retried with exponential backoff; a webhook whose deliveries keep failing is disabled.",
)
def create_webhook(
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    body: Annotated[WebhookCreate, Body(openapi_examples={"registry": {"value": EXAMPLE_WEBHOOK}})],
) -> WebhookCreated:
    row, secret = service.create_webhook(
        session=session, settings=settings, tenant=tenant, body=body
    )
    response.headers["Location"] = f"/v1/webhooks/{row.id}"
    return WebhookCreated(**_read(row).model_dump(), secret=secret)


@router.get(
    "",
    response_model=Page[WebhookRead],
    responses=problem_responses(400, 422),
    summary="List webhooks",
    description="The tenant's webhooks, newest first.",
)
def list_webhooks(
    session: SessionDep, tenant: CurrentTenant, limit: LimitQuery = 20, after: AfterQuery = None
) -> Page[WebhookRead]:
    rows, has_more = service.list_webhooks(session=session, tenant=tenant, limit=limit, after=after)
    return Page[WebhookRead].of(rows, has_more, _read)


@router.get(
    "/{webhook_id}",
    response_model=WebhookRead,
    responses=problem_responses(404),
    summary="Get a webhook",
    description="Whether it is enabled, and why not; failed attempts since the last success.",
)
def get_webhook(session: SessionDep, tenant: CurrentTenant, webhook_id: str) -> WebhookRead:
    return _read(service.get_webhook(session=session, tenant=tenant, webhook_id=webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookRead,
    responses=problem_responses(400, 404, 415, 422),
    summary="Change a webhook",
    description='Its url, events or description; `{"enabled": true}` re-enables a webhook '
    "that was disabled after failed deliveries.",
)
def update_webhook(
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    webhook_id: str,
    body: Annotated[WebhookUpdate, Body(openapi_examples={"enable": {"value": {"enabled": True}}})],
) -> WebhookRead:
    row = service.update_webhook(
        session=session, settings=settings, tenant=tenant, webhook_id=webhook_id, body=body
    )
    return _read(row)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
    summary="Delete a webhook",
    description="No further deliveries are made; its delivery history goes with it.",
)
def delete_webhook(session: SessionDep, tenant: CurrentTenant, webhook_id: str) -> Response:
    service.delete_webhook(session=session, tenant=tenant, webhook_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryRead],
    responses=problem_responses(400, 404, 422),
    summary="List a webhook's deliveries",
    description="Newest first, each with every attempt: status code, latency, error.",
)
def list_deliveries(
    session: SessionDep,
    tenant: CurrentTenant,
    webhook_id: str,
    limit: LimitQuery = 20,
    after: AfterQuery = None,
) -> Page[DeliveryRead]:
    rows, has_more, attempts = service.list_deliveries(
        session=session, tenant=tenant, webhook_id=webhook_id, limit=limit, after=after
    )
    return Page[DeliveryRead].of(rows, has_more, lambda r: _delivery(r, attempts[r.id]))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses=problem_responses(404, 409),
    summary="Send a delivery again",
    description="The same delivery (same id and body) is queued again, whatever became of it; "
    "its new attempts are added to its list.",
)
def resend_delivery(
    session: SessionDep, tenant: CurrentTenant, webhook_id: str, delivery_id: str
) -> DeliveryRead:
    row = service.resend_delivery(
        session=session, tenant=tenant, webhook_id=webhook_id, delivery_id=delivery_id
    )
    attempts = service.attempts_of(session=session, delivery_ids=[row.id])
    return _delivery(row, attempts[row.id])
