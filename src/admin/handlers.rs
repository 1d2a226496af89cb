//! The admin HTTP routes and their handlers. Thin: each handler parses with `query`, reads
//! through `AdminState`, and shapes with `device` / `health` / `scrape` / `metrics::render`.
//! Registered by `server`.

use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::activity::SAMPLE_EVERY;
use super::auth::Verdict;
use super::device::{DevicePage, ListedDevice};
use super::device_detail::DeviceDetail;
use super::error::ApiError;
use super::events::{Listen, MAX_CLIENTS};
use super::gateway_view::{GatewayView, PlatformView};
use super::health::health_report;
use super::query::{DeviceQuery, DeviceSelector, StatusCounts};
use super::state::AdminState;
use super::status_page;
use super::{actions, pages};
use crate::registry::Registration;
use crate::time::now_ms;

/// The Prometheus text exposition format, version 0.0.4.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every admin route. All are read-only: GET, and HEAD answered by the same handler (actix-web
/// sends the headers without the body). Another method on a known path is 405 with `Allow`
/// (RFC 9110 §15.5.6), an unknown path 404.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(read_only("/", status_page))
        .service(read_only("/health", health))
        .service(read_only("/metrics", metrics))
        .service(read_only("/api/devices", devices))
        .service(
            web::resource("/api/devices/{ep}")
                .route(web::get().to(device))
                .route(web::head().to(device))
                .route(web::delete().to(actions::remove))
                .default_service(web::to(|| method_not_allowed("GET, HEAD, DELETE"))),
        )
        .service(read_only("/api/devices/{ep}/detail", device_detail))
        .service(
            web::resource("/api/devices/{ep}/request")
                .app_data(web::PayloadConfig::new(actions::MAX_BODY))
                .route(web::post().to(actions::request))
                .default_service(web::to(|| method_not_allowed("POST"))),
        )
        .service(read_only("/api/gateway", gateway))
        .service(read_only("/api/events", events));
    for asset in pages::ASSETS {
        cfg.service(read_only(asset.path, move || pages::serve(asset)));
    }
}

/// The methods the read-only routes allow.
const ALLOW: &str = "GET, HEAD";

/// `path` served by `handler` for GET and HEAD, 405 for any other method.
fn read_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| method_not_allowed(ALLOW)))
}

async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((actix_web::http::header::ALLOW, allow))
        .finish()
}

fn api_error(e: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(e)
}

/// The first paint: the health summary and the first page of devices, as the script would
/// draw them after its first poll. When a token is configured and the request does not carry
/// it (a browser's navigation never does), only the shell and the health summary (open at
/// `/health` anyway) are served: the script asks for the token and fetches the devices.
async fn status_page(state: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let registry = state.registry_health().await;
    let platform = state.platform_state().await;
    let now = now_ms();
    let authorized = state.auth.check(req.headers().get(AUTHORIZATION)) == Verdict::Allowed;
    let (total, devices): (u64, Vec<Arc<Registration>>) = if !authorized {
        (0, Vec::new())
    } else {
        state.reader.with_index(|idx| {
            let mut total = 0u64;
            let mut devices = Vec::new();
            for reg in idx.live(now) {
                total += 1;
                if devices.len() < STATUS_PAGE_DEVICES {
                    devices.push(Arc::clone(reg));
                }
            }
            (total, devices)
        })
    };
    let devices: Vec<&Registration> = devices.iter().map(Arc::as_ref).collect();
    let (_, health) = health_report(state.reader.len() as u64, registry.as_ref(), &platform);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", pages::CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(status_page::render(&health, &devices, total, now))
}

/// Devices in the server-rendered first paint, as many as the script's first poll asks for.
const STATUS_PAGE_DEVICES: usize = 100;

async fn health(state: web::Data<AdminState>) -> HttpResponse {
    let registry = state.registry_health().await;
    let platform = state.platform_state().await;
    let registrations = state.reader.len() as u64;
    let (code, view) = health_report(registrations, registry.as_ref(), &platform);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    HttpResponse::build(status).json(view)
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let platform = state.link_stats().await;
    let (connected, disconnected) = state.reader.devices_by_status(crate::time::now_ms());
    let inputs = crate::metrics::ScrapeInputs {
        registrations: connected + disconnected,
        devices_connected: connected,
        devices_disconnected: disconnected,
        platform: platform
            .as_ref()
            .map(crate::metrics::PlatformLinkSample::from),
        dtls: state.dtls.as_deref().map(crate::metrics::DtlsSample::from),
    };
    let body = crate::metrics::render(crate::metrics::global(), &inputs);
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(body)
}

async fn devices(state: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let query = match DeviceQuery::parse(req.query_string()) {
        Ok(q) => q,
        Err(e) => return api_error(&e),
    };
    let now = now_ms();
    let (counts, (total, page)) = if query.lookup.filters.is_empty() && !query.sorts_or_searches() {
        // Nothing to match: one pass under the lock, counting and cloning only the page.
        state.reader.with_index(|idx| {
            let mut counts = StatusCounts::default();
            let selected = query.select(idx.live(now).inspect(|reg| counts.add(reg)));
            (counts, selected)
        })
    } else {
        // Under the lock only the index pre-selection and cheap Arc clones; the exact matching
        // runs outside it, so filtering a large registry never holds up the Registry's writes.
        let candidates: Vec<Arc<Registration>> =
            state
                .reader
                .with_index(|idx| match query.candidate_ids(idx) {
                    Some(ids) => ids
                        .iter()
                        .filter_map(|id| idx.get(*id))
                        .filter(|r| !r.is_expired_at(now))
                        .cloned()
                        .collect(),
                    None => idx.live(now).cloned().collect(),
                });
        let counts = state
            .reader
            .with_index(|idx| StatusCounts::of(idx.live(now)));
        (counts, query.select(&candidates))
    };
    HttpResponse::Ok().json(DevicePage {
        counts,
        total,
        page: query.page,
        count: query.count,
        devices: page.iter().map(|r| ListedDevice::of(r.as_ref())).collect(),
    })
}

/// The registry's events as server-sent events (`admin::events`), until the client goes.
async fn events(state: web::Data<AdminState>) -> HttpResponse {
    let Some(hub) = &state.events else {
        return api_error(&ApiError::not_found("no event stream in this gateway"));
    };
    let Ok(Some(rx)) = hub.send(Listen).await else {
        return api_error(&ApiError::unavailable(format!(
            "{MAX_CLIENTS} event streams are open already"
        )));
    };
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .streaming(body)
}

async fn device(
    state: web::Data<AdminState>,
    ep: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let selector = match DeviceSelector::parse(&ep, req.query_string()) {
        Ok(s) => s,
        Err(e) => return api_error(&e),
    };
    // No `?d` (or an empty one) is the registration without a sector: a default meaning "the
    // only sector the name has" could be blocked or redirected by a later registrant of the
    // same name in another sector.
    match state.registered(&selector) {
        Ok(reg) => HttpResponse::Ok().json(ListedDevice::of(reg.as_ref())),
        Err(e) => api_error(&e),
    }
}

/// `GET /api/devices/{ep}/detail[?d=]`: the device page's data ([`DeviceDetail`]).
async fn device_detail(
    state: web::Data<AdminState>,
    ep: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let selector = match DeviceSelector::parse(&ep, req.query_string()) {
        Ok(s) => s,
        Err(e) => return api_error(&e),
    };
    match state.registered(&selector) {
        Ok(reg) => {
            let readings = state.readings.as_ref().map(|r| r.of(reg.id));
            let actions = state.auth.required() && state.executer.is_some();
            HttpResponse::Ok().json(DeviceDetail::of(reg.as_ref(), readings, actions))
        }
        Err(e) => api_error(&e),
    }
}

/// `GET /api/gateway`: the gateway page's data ([`GatewayView`]).
async fn gateway(state: web::Data<AdminState>) -> HttpResponse {
    let (connected, disconnected) = state.reader.devices_by_status(now_ms());
    let stats = state.link_stats().await;
    HttpResponse::Ok().json(GatewayView {
        listeners: &state.listeners,
        devices: StatusCounts {
            all: connected + disconnected,
            connected,
            disconnected,
        },
        platform: PlatformView::of(state.platform.is_some(), stats.as_ref()),
        activity: state.activity.rates(),
        activity_interval_s: SAMPLE_EVERY.as_secs(),
    })
}
