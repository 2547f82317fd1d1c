//! Liveness and readiness probes.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use super::problem::{Problem, ProblemType};
use crate::store::Store;

#[derive(Tags)]
enum ApiTags {
    /// Probes for orchestrators and load balancers.
    Health,
}

#[derive(Object)]
pub struct HealthStatus {
    /// `ok`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum LiveResponse {
    /// The process is serving.
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers.
    #[oai(status = 200)]
    Ok(Json<HealthStatus>),
    /// The database does not answer.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(Json<Problem>),
}

fn ok() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok".to_owned(),
    })
}

pub struct HealthApi;

#[OpenApi(prefix_path = "/health", tag = "ApiTags::Health")]
impl HealthApi {
    /// 200 while the process serves.
    #[oai(path = "/live", method = "get")]
    async fn live(&self) -> LiveResponse {
        LiveResponse::Ok(ok())
    }

    /// 200 while the database answers, 503 otherwise.
    #[oai(path = "/ready", method = "get")]
    async fn ready(&self, store: Data<&Store>) -> ReadyResponse {
        let ping = tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await;
        match ping {
            Ok(Ok(())) => ReadyResponse::Ok(ok()),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: database unreachable");
                ReadyResponse::Unavailable(Json(
                    ProblemType::Unavailable.problem("The database is unreachable."),
                ))
            }
            Err(_) => ReadyResponse::Unavailable(Json(
                ProblemType::Unavailable.problem("The database did not answer within 2 seconds."),
            )),
        }
    }
}
