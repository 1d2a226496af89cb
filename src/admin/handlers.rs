//! The admin HTTP routes and their handlers. Thin: each handler parses with `query`, reads
//! through `AdminState`, and shapes with `device` / `health` / `scrape` / `metrics::render`.
//! Registered by `server`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::device::DevicePage;
use super::error::ApiError;
use super::health::health_report;
use super::query::{DeviceQuery, DeviceSelector};
use super::state::AdminState;
use super::status_page::{STATUS_HTML, STATUS_JS};
use crate::device_object::DeviceObject;
use crate::registry::Registration;
use crate::time::now_ms;

/// The Prometheus text exposition format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every admin route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(status_page))
        .route("/status.js", web::get().to(status_script))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(metrics))
        .route("/api/devices", web::get().to(devices))
        .route("/api/devices/{ep}", web::get().to(device));
}

fn api_error(e: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(e)
}

/// The page loads only its own script and talks only to this server; its styles are inline.
const STATUS_PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'";

async fn status_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", STATUS_PAGE_CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(STATUS_HTML)
}

async fn status_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(STATUS_JS)
}

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
    let inputs = crate::metrics::ScrapeInputs::from_registry(&state.reader, platform);
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
    let (total, page) = if query.lookup.filters.is_empty() {
        // Nothing to match: one pass under the lock, cloning only the page.
        state.reader.with_index(|idx| query.select(idx.live(now)))
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
        query.select(&candidates)
    };
    HttpResponse::Ok().json(DevicePage {
        total,
        page: query.page,
        count: query.count,
        devices: page.iter().map(|r| DeviceObject(r.as_ref())).collect(),
    })
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
    let found = match &selector.d {
        Some(d) => state.reader.find(&selector.ep, Some(d)),
        None => {
            let mut all = state.reader.find_ep(&selector.ep);
            if all.len() > 1 {
                return api_error(&ApiError::bad_parameter(
                    "d",
                    format!(
                        "{} is registered in {} sectors: name one with ?d=",
                        selector.ep.as_str(),
                        all.len()
                    ),
                ));
            }
            all.pop()
        }
    };
    match found {
        Some(reg) => HttpResponse::Ok().json(DeviceObject(reg.as_ref())),
        None => api_error(&ApiError::not_found(match &selector.d {
            Some(d) => format!(
                "no device {} in sector {}",
                selector.ep.as_str(),
                d.as_str()
            ),
            None => format!("no device {}", selector.ep.as_str()),
        })),
    }
}
