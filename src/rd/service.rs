//! `RdService`: the request handler behind the RD's CoAP endpoint.
//!
//! Each request is routed (`route`), parsed by the pure functions of this module's siblings,
//! answered from the [`RegistryReader`] (lookups, discovery: synchronous, no actor hop) or by a
//! message to the Registry actor (writes: answered only once the Registry says the change is
//! durable). Simple registration first GETs the device's `/.well-known/core` through the
//! endpoint's own [`CoapClient`], so the request leaves from the RD's port.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures::future::{ready, FutureExt};
use log::{debug, error, warn};

use super::access::RdAccess;
use super::error::RdError;
use super::filter::{candidate_ids, LookupQuery};
use super::group::{is_group, GroupRequest, GROUP_ENDPOINT_TYPE};
use super::lookup::{
    render_domains, render_endpoints, render_groups, render_resources, visible_to,
};
use super::lookup_cache::{CacheKey, LookupCache, Rendered};
use super::register::{RegistrationRequest, SimpleRegistrationRequest};
use super::resolve::check_self_base;
use super::route::{route, Route};
use super::update::UpdateRequest;
use super::well_known::well_known_core;
use super::LINK_FORMAT;
use crate::coap::{
    ClientError, ClientRequest, CoapClient, Code, HandlerFuture, InboundRequest, Method,
    ObserveKey, OutboundResponse, RequestHandler,
};
use crate::limits::{FetchGate, GateRefusal, LogThrottle};
use crate::metrics::{LookupKind, RegistrationOp};
use crate::registry::{
    Index, Register, Registered, Registration, RegistrationId, Registry, RegistryError,
    RegistryReader, Remove, Update,
};
use crate::time::now_ms;

/// Budget for fetching a device's `/.well-known/core` during simple registration (RFC 9176
/// §5.1). The device waits for our 2.04 meanwhile, so this stays well below its own
/// EXCHANGE_LIFETIME.
const SIMPLE_REGISTRATION_FETCH_BUDGET: Duration = Duration::from_secs(10);
/// Distinct lookups whose rendering is kept (per registry version).
const LOOKUP_CACHE_ENTRIES: usize = 128;
/// Bytes of rendered lookups kept: room for a few full 100,000-endpoint results (7 MB each).
const LOOKUP_CACHE_BYTES: usize = 48 << 20;
/// Max-Age of a 5.03 when the registry is full: a client should not retry at once.
const FULL_RETRY_AFTER_S: u32 = 60;
/// Max-Age of a 5.03 when storage failed: transient, retry soon.
const STORAGE_RETRY_AFTER_S: u32 = 5;

/// Refused writes (4.13 over a size limit, 4.03 by FCFR or the per-source quota): one log
/// line per 10 s at most, whatever the rate of refusals.
static WRITE_REFUSALS: LogThrottle = LogThrottle::new();

fn note_refusal(why: &str) {
    if let Some(n) = WRITE_REFUSALS.note() {
        warn!("rd: {n} writes refused since the last report (latest: {why})");
    }
}

/// The key under which every lookup observation is registered: any registry change may change
/// any lookup's result, so one notification round covers them all.
pub(crate) fn lookup_observe_key() -> ObserveKey {
    ObserveKey("rd-lookup".to_string())
}

/// What the RD needs from `config.yaml`.
#[derive(Debug, Clone)]
pub(crate) struct RdSettings {
    pub default_lifetime_s: u32,
    pub expose_status: bool,
    pub simple_registration: bool,
    /// Advertise the draft-11 resources (`/rd-group`, `/rd-lookup/d`, `/rd-lookup/gp`) in
    /// `/.well-known/core`. They are served either way.
    pub advertise_draft11: bool,
    /// `limits.max_payload_bytes` / `limits.max_links`: larger registrations get 4.13 (and a
    /// simple registration whose fetched links are larger, 5.02).
    pub max_payload_bytes: usize,
    pub max_links: usize,
    /// Simple registrations in progress, per source and overall.
    pub simple_gate: FetchGate,
    /// What plain CoAP may write, and which names each DTLS identity may use.
    pub access: RdAccess,
}

/// The RD's request handler; see the module doc.
pub(crate) struct RdService {
    settings: Arc<RdSettings>,
    registry: Addr<Registry>,
    reader: RegistryReader,
    /// Set right after the endpoint is bound (the endpoint needs the handler first).
    client: OnceLock<CoapClient>,
    lookups: LookupCache,
}

impl RdService {
    pub(crate) fn new(
        settings: Arc<RdSettings>,
        registry: Addr<Registry>,
        reader: RegistryReader,
    ) -> Self {
        RdService {
            settings,
            registry,
            reader,
            client: OnceLock::new(),
            lookups: LookupCache::new(LOOKUP_CACHE_ENTRIES, LOOKUP_CACHE_BYTES),
        }
    }

    /// Give the service the endpoint's client (for simple registration).
    pub(crate) fn set_client(&self, client: CoapClient) {
        let _ = self.client.set(client);
    }
}

impl RequestHandler for RdService {
    fn handle(&self, req: InboundRequest) -> HandlerFuture {
        use Method::{Delete, Get, Post};
        let route = route(&req.path);
        debug!(
            "{} {:?} {} from {}",
            route_name(route),
            req.method,
            req.path_string(),
            req.source
        );
        if req.multicast && !super::multicast::answered_by_multicast(route, req.method) {
            debug!(
                "multicast request from {} dropped: only discovery",
                req.source
            );
            // Never sent: the endpoint answers a multicast request only with a 2.xx.
            return now(OutboundResponse::new(Code::NOT_FOUND));
        }
        let write = matches!(
            (route, req.method),
            (
                Route::WellKnownCore
                    | Route::WellKnownRd
                    | Route::Directory
                    | Route::GroupDirectory
                    | Route::Registration(_),
                Post
            ) | (Route::Registration(_), Delete)
        );
        if write {
            let access = &self.settings.access;
            if let Some(refused) = access.refuse_unknown_identity(&req) {
                note_refusal("a write by an identity not in the identities file");
                return now(refused);
            }
            if let Some(refused) = access.refuse_plain_write(&req) {
                note_refusal("a write over plain CoAP (security.plain_coap: lookup_only)");
                return now(refused);
            }
        }
        match (route, req.method) {
            (Route::WellKnownCore, Get) => now(self.discovery(&req)),
            (Route::WellKnownCore, Post) if self.settings.simple_registration => {
                warn!(
                    "draft-11 simple registration (POST /.well-known/core) from {}",
                    req.source
                );
                recorded(RegistrationOp::Register, self.simple_registration(req))
            }
            (Route::WellKnownRd, Post) if self.settings.simple_registration => {
                recorded(RegistrationOp::Register, self.simple_registration(req))
            }
            // Simple registration makes the RD send a GET to an unauthenticated source; when
            // it is switched off, neither path does.
            (Route::WellKnownRd, _) if !self.settings.simple_registration => {
                now(error_response(&RdError::NotFound))
            }
            (Route::WellKnownCore, Post) if !self.settings.simple_registration => {
                now(error_response(&RdError::MethodNotAllowed))
            }
            (Route::Directory, Post) => recorded(RegistrationOp::Register, self.register(&req)),
            (Route::GroupDirectory, Post) => {
                recorded(RegistrationOp::Register, self.register_group(&req))
            }
            (Route::Registration(id), Post) => {
                recorded(RegistrationOp::Update, self.update(id, &req))
            }
            (Route::Registration(id), Delete) => {
                recorded(RegistrationOp::Remove, self.remove(id, &req))
            }
            (
                route @ (Route::LookupEndpoints
                | Route::LookupResources
                | Route::LookupDomains
                | Route::LookupGroups),
                Get,
            ) => now(self.lookup(route, &req)),
            (Route::NotFound, _) => now(error_response(&RdError::NotFound)),
            _ => now(error_response(&RdError::MethodNotAllowed)),
        }
    }
}

impl RdService {
    /// `GET /.well-known/core` (RFC 9176 §4.3, RFC 6690 §4.1 filtering). Nothing matching a
    /// unicast query is 4.04, as draft-11 §5.2 specifies; for a multicast query the endpoint
    /// drops that 4.04, so the RD stays silent (RFC 7252 §8.2).
    fn discovery(&self, req: &InboundRequest) -> OutboundResponse {
        if let Some(accept) = req.accept.filter(|a| *a != LINK_FORMAT) {
            return error_response(&RdError::NotAcceptable(accept));
        }
        match well_known_core(&req.query, self.settings.advertise_draft11) {
            Ok(Some(doc)) => {
                OutboundResponse::new(Code::CONTENT).with_payload(LINK_FORMAT, doc.into_bytes())
            }
            Ok(None) => OutboundResponse::new(Code::NOT_FOUND),
            Err(e) => error_response(&e),
        }
    }

    /// `POST /rd` (RFC 9176 §5): 2.01 with the registration's Location-Path.
    fn register(&self, req: &InboundRequest) -> HandlerFuture {
        if let Some(refused) = self.payload_too_large(req.payload.len()) {
            return now(refused);
        }
        match RegistrationRequest::parse(
            &req.query,
            req.content_format,
            &req.payload,
            req.source,
            self.settings.default_lifetime_s,
        )
        .and_then(|parsed| own_host_base(parsed.base.as_deref(), req.source).map(|()| parsed))
        {
            Ok(parsed) => {
                let name = self.settings.access.refuse_name(
                    req,
                    parsed.ep.as_str(),
                    parsed.d.as_ref().map(|d| d.as_str()),
                );
                match name.or_else(|| self.too_many_links(parsed.links.len())) {
                    Some(refused) => now(refused),
                    None => self.store(parsed, req.identity.clone(), Code::CREATED),
                }
            }
            Err(e) => now(error_response(&e)),
        }
    }

    /// 4.13 for a body over `limits.max_payload_bytes`; the endpoint adds Size1 = that limit
    /// (RFC 7252 §5.10.9, RFC 7959 §4), the same bound it applies to Block1 uploads.
    fn payload_too_large(&self, len: usize) -> Option<OutboundResponse> {
        let max = self.settings.max_payload_bytes;
        (len > max).then(|| {
            let why = format!("payload over {max} bytes");
            note_refusal(&why);
            OutboundResponse::new(Code::REQUEST_ENTITY_TOO_LARGE).with_diagnostic(why)
        })
    }

    /// 4.13 for a registration with more than `limits.max_links` links.
    fn too_many_links(&self, links: usize) -> Option<OutboundResponse> {
        let max = self.settings.max_links;
        (links > max).then(|| {
            let why = format!("{links} links, at most {max} per registration");
            note_refusal(&why);
            OutboundResponse::new(Code::REQUEST_ENTITY_TOO_LARGE).with_diagnostic(why)
        })
    }

    /// Send a parsed registration to the Registry; answer `success` with the location once it
    /// is durable.
    fn store(
        &self,
        parsed: RegistrationRequest,
        identity: Option<Arc<str>>,
        success: Code,
    ) -> HandlerFuture {
        let msg = register_message(parsed, identity);
        let registry = self.registry.clone();
        async move {
            match registry.send(msg).await {
                Ok(Ok(Registered { registration, .. })) => OutboundResponse::new(success)
                    .with_location_path(registration.id.location_segments()),
                Ok(Err(e)) => registry_error_response(e),
                Err(_) => registry_error_response(RegistryError::Unavailable),
            }
        }
        .boxed()
    }

    /// `POST /.well-known/rd` (RFC 9176 §5.1) and draft-11 `POST /.well-known/core`: fetch the
    /// device's links first, then register, then 2.04.
    fn simple_registration(&self, req: InboundRequest) -> HandlerFuture {
        let simple = match SimpleRegistrationRequest::parse(
            &req.query,
            &req.payload,
            self.settings.default_lifetime_s,
        ) {
            Ok(s) => s,
            Err(e) => return now(error_response(&e)),
        };
        if let Some(refused) = self.settings.access.refuse_name(
            &req,
            simple.ep.as_str(),
            simple.d.as_ref().map(|d| d.as_str()),
        ) {
            return now(refused);
        }
        let Some(client) = self.client.get().cloned() else {
            return now(unavailable("the CoAP client is not ready yet"));
        };
        let ticket = match self.settings.simple_gate.try_enter(req.source.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                let why = match refusal {
                    GateRefusal::Source => "simple registrations from this source in progress",
                    GateRefusal::Full => "too many simple registrations in progress",
                };
                note_refusal(why);
                return now(OutboundResponse::new(Code::SERVICE_UNAVAILABLE)
                    .with_max_age(SIMPLE_REGISTRATION_FETCH_BUDGET.as_secs() as u32)
                    .with_diagnostic(why));
            }
        };
        let registry = self.registry.clone();
        let source = req.source;
        let identity = req.identity.clone();
        let max_links = self.settings.max_links;
        let max_payload = self.settings.max_payload_bytes;
        async move {
            let _ticket = ticket;
            // The fetched links obey the same size bound as a POST /rd body: a device answering
            // with 880 KB via Block2 must not fill memory and the data dir.
            let fetch = ClientRequest::get("/.well-known/core")
                .secure(identity.is_some())
                .accept(LINK_FORMAT)
                .timeout(SIMPLE_REGISTRATION_FETCH_BUDGET)
                .max_body(max_payload);
            let answer = match client.request(source, fetch).await {
                Ok(answer) => answer,
                Err(ClientError::Timeout) => {
                    return OutboundResponse::new(Code::GATEWAY_TIMEOUT)
                        .with_diagnostic("no answer to GET /.well-known/core")
                }
                Err(e) => {
                    return OutboundResponse::new(Code::BAD_GATEWAY)
                        .with_diagnostic(format!("GET /.well-known/core failed: {e}"))
                }
            };
            if answer.code != Code::CONTENT {
                return OutboundResponse::new(Code::BAD_GATEWAY)
                    .with_diagnostic(format!("GET /.well-known/core answered {}", answer.code));
            }
            let parsed = match simple.with_links(answer.content_format, &answer.payload, source) {
                Ok(p) => p,
                Err(e) => return error_response(&e),
            };
            if parsed.links.len() > max_links {
                return OutboundResponse::new(Code::BAD_GATEWAY).with_diagnostic(format!(
                    "/.well-known/core has {} links, at most {max_links} per registration",
                    parsed.links.len()
                ));
            }
            match registry.send(register_message(parsed, identity)).await {
                Ok(Ok(_)) => OutboundResponse::new(Code::CHANGED),
                Ok(Err(e)) => registry_error_response(e),
                Err(_) => registry_error_response(RegistryError::Unavailable),
            }
        }
        .boxed()
    }

    /// draft-11 `POST /rd-group?gp&d&con` with `<>;ep=..` member links, stored as an RFC 9176
    /// App. A group registration. Members must be registered (draft-11 §6.1: else 4.04); a
    /// group never replaces an ordinary endpoint of the same name (4.03).
    fn register_group(&self, req: &InboundRequest) -> HandlerFuture {
        if let Some(refused) = self.payload_too_large(req.payload.len()) {
            return now(refused);
        }
        let group = match GroupRequest::parse(&req.query, req.content_format, &req.payload)
            .and_then(|g| own_host_base(g.base.as_deref(), req.source).map(|()| g))
        {
            Ok(g) => g,
            Err(e) => return now(error_response(&e)),
        };
        for member in &group.members {
            if self.reader.find(member, group.d.as_ref()).is_none() {
                return now(error_response(&RdError::UnknownGroupMember(
                    member.as_str().to_string(),
                )));
            }
        }
        if let Some(existing) = self.reader.find(&group.gp, group.d.as_ref()) {
            if !is_group(&existing) {
                return now(
                    OutboundResponse::new(Code::FORBIDDEN).with_diagnostic(format!(
                        "{} is registered as an endpoint, not a group",
                        group.gp
                    )),
                );
            }
        }
        if let Some(refused) = self.settings.access.refuse_name(
            req,
            group.gp.as_str(),
            group.d.as_ref().map(|d| d.as_str()),
        ) {
            return now(refused);
        }
        let parsed = group.into_registration(req.source, self.settings.default_lifetime_s);
        self.store(parsed, req.identity.clone(), Code::CREATED)
    }

    /// `POST /reg/<id>` (RFC 9176 §5.3.1): 2.04, or 4.04 for an unknown registration.
    fn update(&self, id: RegistrationId, req: &InboundRequest) -> HandlerFuture {
        let parsed = match UpdateRequest::parse(&req.query, req.content_format, &req.payload)
            .and_then(|u| u.check_source(req.source).map(|()| u))
            .and_then(|u| own_host_base(u.base.as_deref(), req.source).map(|()| u))
        {
            Ok(u) => u,
            Err(e) => return now(error_response(&e)),
        };
        if let Some(refused) = self.refuse_takeover(id, req) {
            return now(refused);
        }
        let msg = Update {
            id,
            lifetime_s: parsed.lifetime_s,
            base: parsed.base,
            attrs: parsed.attrs,
            source: req.source,
            identity: req.identity.clone(),
        };
        let registry = self.registry.clone();
        async move {
            match registry.send(msg).await {
                Ok(Ok(_)) => OutboundResponse::new(Code::CHANGED),
                Ok(Err(e)) => registry_error_response(e),
                Err(_) => registry_error_response(RegistryError::Unavailable),
            }
        }
        .boxed()
    }

    /// `DELETE /reg/<id>` (RFC 9176 §5.3.2): 2.02; 4.03 (another address or identity holds
    /// it), 4.01 (a DTLS registration, asked over plain CoAP), or 4.04.
    /// First come, first remembered is decided by the Registry, in the same step as the
    /// removal, so no other write can slip between the check and the delete.
    fn remove(&self, id: RegistrationId, req: &InboundRequest) -> HandlerFuture {
        if let Some(refused) = self.refuse_takeover(id, req) {
            return now(refused);
        }
        let registry = self.registry.clone();
        let remove = Remove::requested_by(id, req.source, req.identity.clone());
        async move {
            match registry.send(remove).await {
                Ok(Ok(_)) => OutboundResponse::new(Code::DELETED),
                Ok(Err(e)) => registry_error_response(e),
                Err(_) => registry_error_response(RegistryError::Unavailable),
            }
        }
        .boxed()
    }

    /// An identity changing a registration must (still) be allowed its name: taking over a
    /// plain registration (`registration_policy`), or updating its own after the identities
    /// file narrowed what it may use. Whose registration it is, is the Registry's to check.
    fn refuse_takeover(
        &self,
        id: RegistrationId,
        req: &InboundRequest,
    ) -> Option<OutboundResponse> {
        req.identity.as_ref()?;
        // An owner may always remove its own registration, even after its entry narrowed.
        let removing = req.method == Method::Delete;
        match self.reader.get(id) {
            Some(reg) if !(removing && reg.identity.is_some()) => self.settings.access.refuse_name(
                req,
                reg.ep.as_str(),
                reg.d.as_ref().map(|d| d.as_str()),
            ),
            _ => None,
        }
    }

    /// The four lookup interfaces (RFC 9176 §6; draft-11 §7), answered from the in-memory
    /// index through the shared [`LookupCache`]. An empty result is 2.05 with an empty payload
    /// (never 4.04, §6.2).
    fn lookup(&self, route: Route, req: &InboundRequest) -> OutboundResponse {
        crate::metrics::global().record_lookup(lookup_kind(route));
        if let Some(accept) = req.accept.filter(|a| *a != LINK_FORMAT) {
            return error_response(&RdError::NotAcceptable(accept));
        }
        let key = CacheKey::new(route, &req.query, req.source);
        let rendered = match self.lookups.get(&key, self.reader.version()) {
            Some(hit) => hit,
            None => {
                // Only queries that parse are ever cached, so a hit needs no parsing.
                let query = match LookupQuery::parse(&req.query) {
                    Ok(q) => q,
                    Err(e) => return error_response(&e),
                };
                let (version, payload) = self.reader.with_index(|idx| {
                    let payload =
                        render_lookup(idx, route, query, req.source, self.settings.expose_status);
                    (idx.version(), payload)
                });
                let rendered = Rendered {
                    etag: representation_etag(payload.as_bytes()),
                    payload: Bytes::from(payload),
                };
                self.lookups.put(key, version, rendered.clone());
                rendered
            }
        };
        // RFC 7252 §5.10.6: a client that already holds this representation gets 2.03.
        if req.observe.is_none() && req.etags.contains(&rendered.etag) {
            return OutboundResponse::new(Code::VALID).with_etag(rendered.etag);
        }
        let mut response = OutboundResponse::new(Code::CONTENT)
            .with_payload(LINK_FORMAT, rendered.payload)
            .with_etag(rendered.etag);
        if req.observe == Some(0) {
            response = response.with_observe(lookup_observe_key());
        }
        response
    }
}

/// Render one lookup from the index (under the reader's lock).
fn render_lookup(
    idx: &Index,
    route: Route,
    mut query: LookupQuery,
    source: SocketAddr,
    expose_status: bool,
) -> String {
    let now = now_ms();
    let groups: Vec<&Arc<Registration>> = group_ids(idx)
        .iter()
        .filter_map(|id| idx.get(*id))
        .filter(|r| !r.is_expired_at(now))
        .collect();
    if route != Route::LookupGroups && query.filters.iter().any(|f| f.name == "gp") {
        query.bind_groups(groups.iter().map(|r| r.as_ref()));
    }
    let visible = |r: &&Arc<Registration>| !r.is_expired_at(now) && visible_to(r, source);
    if route == Route::LookupGroups {
        return render_groups(groups.iter().copied().filter(visible), &query).0;
    }
    let planned = candidate_ids(idx, &query);
    let by_id = planned
        .iter()
        .flatten()
        .filter_map(|id| idx.get(*id))
        .filter(visible);
    let all = idx.live(now).filter(visible);
    // Both arms render the same way; only where the candidates come from differs.
    match (route, planned.is_some()) {
        (Route::LookupEndpoints, true) => render_endpoints(by_id, &query, expose_status).0,
        (Route::LookupEndpoints, false) => render_endpoints(all, &query, expose_status).0,
        (Route::LookupResources, true) => render_resources(by_id, &query, expose_status).0,
        (Route::LookupResources, false) => render_resources(all, &query, expose_status).0,
        (_, true) => render_domains(by_id, &query).0,
        (_, false) => render_domains(all, &query).0,
    }
}

/// An explicit base (registration, update, group `con`) that names the
/// gateway's own host is 4.00 unless the request came from that host (`check_self_base`).
/// Checked here rather than in the pure parsers because it reads the host's addresses.
fn own_host_base(base: Option<&str>, source: SocketAddr) -> Result<(), RdError> {
    let Some(base) = base else {
        return Ok(());
    };
    check_self_base(base, source, crate::host_addrs::is_own).map_err(|reason| {
        note_refusal(&format!(
            "base {base:?} from {source} names the gateway's host"
        ));
        RdError::InvalidBase {
            param: "base",
            value: base.to_string(),
            reason,
        }
    })
}

/// The Registry message for a parsed registration (POST /rd, simple, group).
fn register_message(parsed: RegistrationRequest, identity: Option<Arc<str>>) -> Register {
    Register {
        identity,
        ep: parsed.ep,
        d: parsed.d,
        base: parsed.base,
        lifetime_s: parsed.lifetime_s,
        attrs: parsed.attrs,
        links: parsed.links,
        source: parsed.source,
    }
}

/// An ETag that changes whenever the representation does: a 64-bit SipHash of the payload
/// (fixed keys, so equal across requests and restarts). It lets observers of a lookup be
/// notified only when their result changed, lets Block2 clients detect a result that changed
/// between blocks (RFC 7959 §2.4), and answers revalidation with 2.03.
fn representation_etag(payload: &[u8]) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)] // SipHasher: stable keys are the point here, not DoS resistance.
    let mut hasher = std::hash::SipHasher::new();
    payload.hash(&mut hasher);
    hasher.finish().to_be_bytes().to_vec()
}

fn group_ids(idx: &Index) -> BTreeSet<RegistrationId> {
    idx.ids_with_endpoint_attr("et", GROUP_ENDPOINT_TYPE, false)
        .unwrap_or_default()
}

fn now(response: OutboundResponse) -> HandlerFuture {
    ready(response).boxed()
}

fn code(class: u8, detail: u8) -> Code {
    Code((class << 5) | detail)
}

/// An RD error as a response: its code and a diagnostic payload (RFC 7252 §5.5.2).
fn error_response(e: &RdError) -> OutboundResponse {
    let (class, detail) = e.code();
    OutboundResponse::new(code(class, detail)).with_diagnostic(e.to_string())
}

fn unavailable(why: &str) -> OutboundResponse {
    OutboundResponse::new(Code::SERVICE_UNAVAILABLE)
        .with_max_age(STORAGE_RETRY_AFTER_S)
        .with_diagnostic(why)
}

/// Registry failures: unknown registration is 4.04; a full registry or failed storage is 5.03
/// with Max-Age, so clients retry later (RFC 9176 §4).
fn registry_error_response(e: RegistryError) -> OutboundResponse {
    match e {
        RegistryError::NotFound(_) => OutboundResponse::new(Code::NOT_FOUND),
        RegistryError::Full { limit } => OutboundResponse::new(Code::SERVICE_UNAVAILABLE)
            .with_max_age(FULL_RETRY_AFTER_S)
            .with_diagnostic(format!("registry full ({limit} registrations)")),
        RegistryError::Store(e) => {
            error!("registry storage failed: {e}");
            unavailable("storage failure")
        }
        RegistryError::Unavailable => unavailable("registry unavailable"),
        RegistryError::Refused(refusal) => {
            let why = refusal.to_string();
            note_refusal(&why);
            let code = if refusal.wants_credentials() {
                Code::UNAUTHORIZED
            } else {
                Code::FORBIDDEN
            };
            OutboundResponse::new(code).with_diagnostic(why)
        }
    }
}

/// Count a registration write by the code it is answered with (the registration metrics).
fn recorded(op: RegistrationOp, answer: HandlerFuture) -> HandlerFuture {
    answer
        .map(move |resp| {
            crate::metrics::global().record_registration(op, resp.code);
            resp
        })
        .boxed()
}

fn lookup_kind(route: Route) -> LookupKind {
    match route {
        Route::LookupResources => LookupKind::Resource,
        Route::LookupDomains => LookupKind::Domain,
        Route::LookupGroups => LookupKind::Group,
        _ => LookupKind::Endpoint,
    }
}

fn route_name(route: Route) -> &'static str {
    match route {
        Route::WellKnownCore => "discovery",
        Route::WellKnownRd => "simple-registration",
        Route::Directory => "directory",
        Route::GroupDirectory => "group-directory",
        Route::Registration(_) => "registration",
        Route::LookupEndpoints => "lookup-ep",
        Route::LookupResources => "lookup-res",
        Route::LookupDomains => "lookup-d",
        Route::LookupGroups => "lookup-gp",
        Route::NotFound => "not-found",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::InboundRequest;
    use crate::registry::RegistryConfig;

    fn request(method: Method, path: &[&str], query: &[&str], payload: &[u8]) -> InboundRequest {
        InboundRequest {
            source: "[2001:db8::7]:5683".parse().unwrap(),
            local: "[2001:db8::1]:5683".parse().unwrap(),
            method,
            confirmable: true,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: query.iter().map(|s| s.to_string()).collect(),
            content_format: Some(LINK_FORMAT),
            accept: None,
            observe: None,
            etags: Vec::new(),
            if_match: Vec::new(),
            if_none_match: false,
            block2: None,
            payload: payload.to_vec(),
            multicast: false,
            token: vec![1],
            identity: None,
        }
    }

    /// Every request answered from one cached rendering sends from the same allocation: a
    /// per-request copy of a 7 MB lookup is what capped the first-block rate.
    #[actix_rt::test]
    async fn requests_answered_from_the_lookup_cache_share_one_body() {
        let dir = tempfile::tempdir().unwrap();
        let (registry, reader) =
            crate::registry::start(RegistryConfig::in_dir(dir.path().join("db"))).unwrap();
        let settings = Arc::new(crate::config::Config::default().rd_settings());
        let service = RdService::new(settings, registry, reader);
        for ep in ["ep=node1", "ep=node2"] {
            let created = service
                .handle(request(
                    Method::Post,
                    &["rd"],
                    &[ep],
                    b"</temp>;rt=\"temperature\"",
                ))
                .await;
            assert_eq!(created.code, Code::CREATED);
        }
        let lookup = || request(Method::Get, &["rd-lookup", "res"], &["rt=temperature"], b"");
        let first = service.handle(lookup()).await;
        let second = service.handle(lookup()).await;
        assert_eq!(first.code, Code::CONTENT);
        let text = std::str::from_utf8(&first.payload).unwrap();
        assert_eq!(text.matches("rt=\"temperature\"").count(), 2, "{text}");
        assert_eq!(first.payload, second.payload);
        assert_eq!(first.etag, second.etag);
        assert_eq!(
            first.payload.as_ptr(),
            second.payload.as_ptr(),
            "the second answer shares the cached body instead of copying it"
        );
    }
}
