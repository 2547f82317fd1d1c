//! `/admin/v1/webhook-deliveries`: where each event stands with each subscriber, and a
//! retry.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::users::{AdminAnswer, no_store, page_limit};
use super::{AdminKey, AdminTags};
use crate::domain::events::{Delivery, DeliveryFilter, Event};
use crate::domain::{AuthService, Client};

/// One event on its way to one subscriber.
#[derive(Object)]
pub struct WebhookDelivery {
    /// The delivery's id (for a retry).
    pub id: Uuid,
    /// The event's id: the `webhook-id` the subscriber receives.
    pub event_id: String,
    /// `user.created`, `session.ended`, …
    pub event_type: String,
    /// The subscriber's URL.
    pub subscriber: String,
    /// `pending`, `delivered` or `failed` (given up after 24 hours of retries).
    pub status: String,
    pub attempts: u32,
    /// RFC 3339; `null` unless pending.
    pub next_attempt_at: Option<String>,
    /// The HTTP status of the latest attempt; `null` before one or when it got no answer
    /// (timeout, refused connection).
    pub last_status: Option<u16>,
}

impl From<Delivery> for WebhookDelivery {
    fn from(delivery: Delivery) -> Self {
        Self {
            id: delivery.id,
            event_id: Event::webhook_id(delivery.event_id),
            event_type: delivery.event_type,
            subscriber: crate::config::SecretUrl::from(delivery.subscriber).to_string(),
            status: delivery.status.as_str().to_owned(),
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at.map(|at| at.rfc3339()),
            last_status: delivery.last_status,
        }
    }
}

#[derive(Object)]
pub struct DeliveryPage {
    /// In the order their events happened.
    pub deliveries: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub enum DeliveryPageResponse {
    #[oai(status = 200)]
    Ok(Json<DeliveryPage>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum RetryResponse {
    /// The delivery is due now.
    #[oai(status = 202)]
    Accepted,
}

pub struct WebhooksApi;

#[OpenApi(prefix_path = "/admin/v1", tag = "AdminTags::Webhooks")]
impl WebhooksApi {
    /// Event deliveries, of one `status` (`pending`, `failed` or `delivered`) or all;
    /// `limit` per page (1 to 200, default 50), `cursor` from the previous page.
    #[oai(path = "/webhook-deliveries", method = "get")]
    async fn deliveries(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
        status: Query<Option<String>>,
        limit: Query<Option<u32>>,
        cursor: Query<Option<String>>,
    ) -> AdminAnswer<DeliveryPageResponse> {
        let filter = DeliveryFilter {
            status: status.0,
            limit: page_limit(limit.0)?,
            cursor: cursor.0,
        };
        let page = service.admin_deliveries(filter).await?;
        Ok(DeliveryPageResponse::Ok(
            Json(DeliveryPage {
                deliveries: page.items.into_iter().map(WebhookDelivery::from).collect(),
                next_cursor: page.next_cursor,
            }),
            no_store(),
        ))
    }

    /// Sends a delivery again now, whatever its status; a failed one gets another 24
    /// hours of retries.
    #[oai(path = "/webhook-deliveries/:id/retry", method = "post")]
    async fn retry(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        id: Path<Uuid>,
    ) -> AdminAnswer<RetryResponse> {
        service.admin_retry_delivery(&key.0, client.0, id.0).await?;
        Ok(RetryResponse::Accepted)
    }
}
