//! The management endpoint (Spring Boot's actuator): health probes and Prometheus metrics over
//! HTTP on `management.port`.
//!
//! - `GET /health/liveness`: 200 while every consumer's poll loop runs and turns and its
//!   partitions make progress; 503 when one ended or is stuck, or a partition task died (a
//!   restart helps).
//! - `GET /health/readiness`: 200 once every consumer joined its group and reaches a broker; 503
//!   before, while no broker is reachable, and during shutdown.
//! - `GET /health`: both, with every consumer's assignment state, lag and lag alert, and the
//!   partitions whose dead-letter publication fails, as JSON.
//! - `GET /metrics`: Prometheus text exposition.

pub(crate) mod health;
pub(crate) mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ManagementSettings;
use crate::control::Listeners;
use crate::error::Error;
use health::Health;

/// The running endpoint; it stops when dropped.
pub(crate) struct Management {
    address: SocketAddr,
    server: JoinHandle<()>,
}

impl Management {
    /// Listens on `management.address:management.port` and serves until dropped.
    pub(crate) async fn start(
        settings: &ManagementSettings,
        port: u16,
        (health, listeners): (Arc<Health>, Arc<Listeners>),
    ) -> Result<Self, Error> {
        let address = format!("{}:{port}", settings.address);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Management {
                address: address.clone(),
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Management { address, source })?;
        let endpoint = Arc::new(Endpoint {
            health,
            metrics: metrics::install(),
            listeners,
            control: settings.listener_control,
        });
        tracing::info!(%address, "management endpoint: /health, /health/liveness, /health/readiness, /metrics, /listeners");
        let server = tokio::spawn(serve(listener, endpoint));
        Ok(Management { address, server })
    }

    /// Where the endpoint listens (with the actual port when `management.port = 0`).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Management {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Endpoint {
    health: Arc<Health>,
    metrics: Option<PrometheusHandle>,
    listeners: Arc<Listeners>,
    /// `management.listener-control`: listeners may be paused, resumed, stopped and started.
    control: bool,
}

async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "management endpoint: accept failed");
                continue;
            }
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let endpoint = Arc::clone(&endpoint);
                async move { Ok::<_, Infallible>(endpoint.respond(&request).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "management endpoint: connection closed");
            }
        });
    }
}

impl Endpoint {
    async fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if request.method() == Method::POST {
            return match path.strip_prefix("/listeners/") {
                Some(action) => self.control(action).await,
                None => text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST is served on /listeners/{id}/{pause|resume|stop|start} only\n",
                ),
            };
        }
        if request.method() != Method::GET {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET (and POST to /listeners) is served\n",
            );
        }
        match path {
            "/listeners" => response(
                StatusCode::OK,
                "application/json",
                self.listeners.describe().to_string(),
            ),
            "/health" => {
                let details = self.health.details();
                let up = details["status"] == "UP";
                json(up, &details)
            }
            "/health/liveness" => {
                let probe = self.health.liveness();
                json(probe.is_up(), &probe.to_json())
            }
            "/health/readiness" => {
                let probe = self.health.readiness();
                json(probe.is_up(), &probe.to_json())
            }
            "/metrics" => match &self.metrics {
                Some(handle) => {
                    handle.run_upkeep();
                    response(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        handle.render(),
                    )
                }
                None => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metrics go to the recorder the application installed\n",
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /health, /health/liveness, /health/readiness, /metrics or /listeners\n",
            ),
        }
    }

    /// `POST /listeners/{id}/{pause|resume|stop|start}`, when `management.listener-control` is on.
    async fn control(&self, action: &str) -> Response<Full<Bytes>> {
        if !self.control {
            return text(
                StatusCode::FORBIDDEN,
                "listener control is off; set management.listener-control = true\n",
            );
        }
        let Some((id, verb)) = action.rsplit_once('/') else {
            return text(
                StatusCode::NOT_FOUND,
                "try /listeners/{id}/{pause|resume|stop|start}\n",
            );
        };
        let Some(listener) = self.listeners.get(id) else {
            return text(StatusCode::NOT_FOUND, "no such listener\n");
        };
        match verb {
            "pause" => listener.pause(),
            "resume" => listener.resume(),
            "stop" => {
                listener.stop().await;
            }
            "start" => {
                if let Err(error) = listener.start().await {
                    return response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain; charset=utf-8",
                        format!("{error}\n"),
                    );
                }
            }
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "the actions are pause, resume, stop and start\n",
                )
            }
        }
        tracing::info!(
            listener = id,
            action = verb,
            "listener control over the management endpoint"
        );
        response(
            StatusCode::OK,
            "application/json",
            self.listeners.describe().to_string(),
        )
    }
}

fn json(up: bool, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response(status, "application/json", body.to_string())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body.to_owned())
}

fn response(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
