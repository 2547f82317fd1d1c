//! `/admin/v1/clients`: the service clients of the client-credentials grant.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::users::{AdminAnswer, DoneResponse, no_store};
use super::{AdminKey, AdminTags};
use crate::domain::clients::ClientInfo;
use crate::domain::{AuthService, Client};

#[derive(Object)]
pub struct NewClientRequest {
    /// What the client is (1 to 64 characters); the actor of what it does.
    pub name: String,
    /// The scopes it may ask for; `authgate:admin` opens this API to its tokens.
    #[oai(default)]
    pub scopes: Vec<String>,
}

/// A client just made: the secret is shown here only.
#[derive(Object)]
pub struct CreatedClient {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    pub scopes: Vec<String>,
}

#[derive(Object)]
pub struct ClientBody {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

impl From<ClientInfo> for ClientBody {
    fn from(info: ClientInfo) -> Self {
        Self {
            client_id: info.client_id,
            name: info.name,
            scopes: info.scopes,
            created_at: info.created_at.rfc3339(),
        }
    }
}

#[derive(Object)]
pub struct ClientList {
    pub clients: Vec<ClientBody>,
}

#[derive(ApiResponse)]
pub enum CreatedClientResponse {
    #[oai(status = 201)]
    Created(Json<CreatedClient>, #[oai(header = "Cache-Control")] String),
}

#[derive(ApiResponse)]
pub enum ClientListResponse {
    #[oai(status = 200)]
    Ok(Json<ClientList>, #[oai(header = "Cache-Control")] String),
}

pub struct ClientsApi;

#[OpenApi(prefix_path = "/admin/v1", tag = "AdminTags::Clients")]
impl ClientsApi {
    /// Make a service client; its secret is in this answer only.
    #[oai(path = "/clients", method = "post")]
    async fn create(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        body: Json<NewClientRequest>,
    ) -> AdminAnswer<CreatedClientResponse> {
        let made = service
            .admin_create_client(&key.0, client.0, &body.name, &body.scopes)
            .await?;
        Ok(CreatedClientResponse::Created(
            Json(CreatedClient {
                client_id: made.info.client_id,
                client_secret: made.client_secret,
                name: made.info.name,
                scopes: made.info.scopes,
            }),
            no_store(),
        ))
    }

    /// Every client (never a secret).
    #[oai(path = "/clients", method = "get")]
    async fn list(
        &self,
        service: Data<&Arc<AuthService>>,
        _key: AdminKey,
    ) -> AdminAnswer<ClientListResponse> {
        let clients = service.admin_clients().await?;
        Ok(ClientListResponse::Ok(
            Json(ClientList {
                clients: clients.into_iter().map(ClientBody::from).collect(),
            }),
            no_store(),
        ))
    }

    /// Delete a client: authgate refuses its tokens at once.
    #[oai(path = "/clients/:client_id", method = "delete")]
    async fn delete(
        &self,
        service: Data<&Arc<AuthService>>,
        client: Data<&Client>,
        key: AdminKey,
        client_id: Path<String>,
    ) -> AdminAnswer<DoneResponse> {
        service
            .admin_delete_client(&key.0, client.0, &client_id.0)
            .await?;
        Ok(DoneResponse::NoContent)
    }
}
