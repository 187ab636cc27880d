//! A small HTTP/1.1 listener (hyper) for the health endpoints and the
//! admin port: each request gets a [`Reply`] from the routes; bodies are
//! short text. Clients that do not send their request head within 10 s
//! are closed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Health;
use crate::error::{Error, Result};
use crate::proxy::pool::PoolList;

/// An answer: status, body, content type, and what to wake once it has
/// been sent (a shutdown must not cut its own answer short).
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub then: Option<Arc<tokio::sync::Notify>>,
}

impl Reply {
    fn text((status, body): (u16, String)) -> Self {
        Self {
            status,
            body,
            content_type: "text/plain; charset=utf-8",
            then: None,
        }
    }
}

/// What a listener answers, by method and path.
pub(crate) type Routes = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

/// Binds `addr` (an error names the flag to change).
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::usage(format!("listening on {addr} ({flag}): {e}")))
}

/// Serves `listener` with `routes` until the task is dropped.
pub(crate) fn spawn(listener: TcpListener, routes: Routes) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let routes = Arc::clone(&routes);
            tokio::spawn(async move {
                let then = Arc::new(std::sync::Mutex::new(None));
                let after = Arc::clone(&then);
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let mut reply = routes(req.method(), req.uri().path());
                    if let (Some(n), Ok(mut t)) = (reply.then.take(), after.lock()) {
                        *t = Some(n);
                    }
                    async move { Ok::<_, Infallible>(response(reply)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                // The answer is out (and the connection closed).
                if let Some(n) = then.lock().ok().and_then(|mut t| t.take()) {
                    n.notify_one();
                }
            });
        }
    })
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = hyper::StatusCode::from_u16(reply.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(reply.content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn not_found(path: &str) -> Reply {
    Reply::text((
        404,
        format!("no such endpoint {}\n", crate::text::escape(path)),
    ))
}

/// The health listener's routes: `/startup`, `/liveness`, `/readiness`,
/// `/upstream` (with `health`), `/metrics` (with `metrics`), `/pools`
/// (always: the pools' state as JSON).
pub(crate) fn health_routes(
    health: Option<Arc<Health>>,
    metrics: bool,
    pools: Vec<Arc<dyn PoolList>>,
) -> Routes {
    Arc::new(move |method, path| {
        if method != Method::GET && method != Method::HEAD {
            return Reply::text((405, "use GET\n".into()));
        }
        match (path, &health, metrics) {
            ("/pools", _, _) => Reply {
                status: 200,
                body: pools_json(&pools),
                content_type: "application/json",
                then: None,
            },
            ("/metrics", _, true) => Reply {
                status: 200,
                body: super::metrics::render(),
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                then: None,
            },
            ("/startup", Some(h), _) => Reply::text(h.startup()),
            ("/liveness", Some(_), _) => Reply::text((200, "ok: serving\n".into())),
            ("/readiness", Some(h), _) => Reply::text(h.readiness()),
            ("/upstream", Some(h), _) => Reply::text(h.upstream()),
            _ => not_found(path),
        }
    })
}

/// The admin port's routes: `POST /quitquitquit` stops the proxy as
/// SIGTERM does.
pub(crate) fn admin_routes(health: Arc<Health>) -> Routes {
    Arc::new(move |method, path| match (method, path) {
        (&Method::POST, "/quitquitquit") => Reply {
            then: Some(Arc::clone(&health.quit)),
            ..Reply::text((200, "shutting down\n".into()))
        },
        (_, "/quitquitquit") => Reply::text((405, "use POST\n".into())),
        _ => not_found(path),
    })
}

/// `/pools`: `{"pools": [{"target", "engine", "user", "database", "mode",
/// "size", "active", "idle", "opening", "waiting"}, …]}`.
fn pools_json(pools: &[Arc<dyn PoolList>]) -> String {
    let mut out = Vec::new();
    for p in pools {
        for v in p.views() {
            let mut value = serde_json::to_value(&v).unwrap_or_default();
            if let Some(o) = value.as_object_mut() {
                o.insert("target".into(), p.target().into());
                o.insert("engine".into(), p.engine().into());
            }
            out.push(value);
        }
    }
    let mut body = serde_json::json!({ "pools": out }).to_string();
    body.push('\n');
    body
}
