//! What the console may do to a device, not only read: send it a CoAP request through the
//! Executer (`POST /api/devices/{ep}/request`) and remove its registration
//! (`DELETE /api/devices/{ep}`). Both need the admin token: on a gateway without one
//! (`http.token_file` unset, the read-only API open on localhost) they are refused with 403,
//! so an open console can look but never act. Every action is logged with who asked and how
//! it ended; the token itself never is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::error::ApiError;
use super::query::DeviceSelector;
use super::state::{AdminState, ACTOR_WAIT};
use crate::executer::ConsoleCommand;
use crate::platform::protocol::{CommandOutcome, CommandResult};
use crate::platform::Command;
use crate::registry::{Registration, Remove};

/// The longest a console request may wait for its device, the Executer's queue included.
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(35);
/// Request bodies are small JSON objects; a payload for a device is at most a few KiB.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Console request ids (`console-<n>`), unique within the process; they only appear in logs.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn error(e: &ApiError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(e)
}

/// Who asked, for the log: the peer's address (never the token).
fn requester(req: &HttpRequest) -> String {
    req.peer_addr()
        .map_or_else(|| "unknown peer".to_string(), |a| a.to_string())
}

/// The device an action is for, once the gateway allows actions at all: it must have an admin
/// token (the middleware already checked the request carries it when there is one), and the
/// device must be registered.
fn target(
    state: &AdminState,
    ep: &str,
    req: &HttpRequest,
) -> Result<(DeviceSelector, Arc<Registration>), ApiError> {
    if !state.auth.required() {
        return Err(ApiError::forbidden(
            "console actions need an admin token: set http.token_file (or \
             COAP_GATEWAY_HTTP_TOKEN); without one the console is read-only",
        ));
    }
    let selector = DeviceSelector::parse(ep, req.query_string())?;
    let reg = state.registered(&selector)?;
    Ok((selector, reg))
}

/// `POST /api/devices/{ep}/request[?d=]`: the body is a platform `command` without `id`,
/// `ep` and `d` (`{"method":"PUT","path":"/actuators/led","payload":"1"}`,
/// docs/platform-protocol.md); the answer is its `command_result`.
pub(crate) async fn request(
    state: web::Data<AdminState>,
    ep: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let selector = match target(&state, &ep, &req) {
        Ok((selector, _)) => selector,
        Err(e) => return error(&e),
    };
    let id = format!("console-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let command = match command_of(&body, &id, &selector) {
        Ok(c) => c,
        Err(e) => return error(&e),
    };
    let Some(executer) = &state.executer else {
        return error(&ApiError::unavailable("no Executer runs in this gateway"));
    };
    let what = format!(
        "{:?} {} on {} (d {})",
        command.method,
        command.path,
        selector.ep.as_str(),
        selector.d.as_ref().map_or("none", |d| d.as_str())
    );
    let who = requester(&req);
    let result: CommandResult =
        match tokio::time::timeout(REQUEST_WAIT, executer.send(ConsoleCommand(command))).await {
            Ok(Ok(result)) => result,
            _ => {
                log::warn!("admin console: {id} {what} from {who}: the Executer did not answer");
                return error(&ApiError::unavailable(
                    "the Executer did not answer in time",
                ));
            }
        };
    match &result.outcome {
        CommandOutcome::Response { code, rtt_ms, .. } => {
            log::info!("admin console: {id} {what} from {who}: answered {code} in {rtt_ms} ms")
        }
        CommandOutcome::Failed { error } => log::info!(
            "admin console: {id} {what} from {who}: failed: {:?}: {}",
            error.kind,
            error.message
        ),
    }
    HttpResponse::Ok().json(result)
}

/// The console's body as a platform command: the body's fields, with `id`, `ep` and `d` from
/// the request (a body that names them is refused: the URL says which device).
fn command_of(body: &[u8], id: &str, selector: &DeviceSelector) -> Result<Command, ApiError> {
    let mut fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => return Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    };
    for taken in ["id", "ep", "d"] {
        if fields.contains_key(taken) {
            return Err(ApiError::bad_request(format!(
                "the body may not name {taken:?}: the URL names the device"
            )));
        }
    }
    fields.insert("id".into(), Value::from(id));
    fields.insert("ep".into(), Value::from(selector.ep.as_str()));
    if let Some(d) = &selector.d {
        fields.insert("d".into(), Value::from(d.as_str()));
    }
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("not a command: {e}")))
}

/// `DELETE /api/devices/{ep}[?d=]`: remove the registration, as the gateway's own removal
/// (not subject to the device's write policy). 204, or 404 when there is none.
pub(crate) async fn remove(
    state: web::Data<AdminState>,
    ep: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    let reg = match target(&state, &ep, &req) {
        Ok((_, reg)) => reg,
        Err(e) => return error(&e),
    };
    let who = requester(&req);
    let remove = Remove {
        id: reg.id,
        source: None,
        identity: None,
    };
    match tokio::time::timeout(ACTOR_WAIT * 5, state.registry.send(remove)).await {
        Ok(Ok(Ok(_))) => {
            log::info!(
                "admin console: registration {} of {} (d {}) removed, asked from {who}",
                reg.id.0,
                reg.ep.as_str(),
                reg.d.as_ref().map_or("none", |d| d.as_str())
            );
            HttpResponse::NoContent().finish()
        }
        Ok(Ok(Err(e))) => {
            log::warn!(
                "admin console: removing {} asked from {who} failed: {e}",
                reg.ep.as_str()
            );
            error(&ApiError::unavailable(format!("the registry refused: {e}")))
        }
        _ => error(&ApiError::unavailable(
            "the registry did not answer in time",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(query: &str) -> DeviceSelector {
        DeviceSelector::parse("node1", query).unwrap()
    }

    #[test]
    fn the_body_becomes_a_command_for_the_device_the_url_names() {
        let c = command_of(
            br#"{"method":"PUT","path":"/actuators/led","payload":"1"}"#,
            "console-1",
            &selector("d=floor2"),
        )
        .unwrap();
        assert_eq!(c.id, "console-1");
        assert_eq!(c.ep, "node1");
        assert_eq!(c.d.as_deref(), Some("floor2"));
        assert_eq!(c.path, "/actuators/led");
        assert_eq!(c.payload.as_deref(), Some("1"));
    }

    #[test]
    fn bodies_that_are_not_commands_are_refused_with_the_reason() {
        for (body, says) in [
            (&b"[1]"[..], "JSON object"),
            (b"{", "not JSON"),
            (br#"{"method":"PUT","path":"/x","ep":"other"}"#, "\"ep\""),
            (br#"{"method":"BREW","path":"/x"}"#, "not a command"),
            (br#"{"path":"/x"}"#, "not a command"),
        ] {
            let e = command_of(body, "console-1", &selector("")).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.error.contains(says), "{}: {}", says, e.error);
        }
    }
}
