//! The console's static files: the device page, the gateway page, their scripts and the one
//! stylesheet, compiled into the binary with `include_str!` (no build step, no CDN). Each page
//! loads one script: the shared part (`console/common.js`: the token, API calls, the event
//! stream, drawing helpers) followed by the page's own. The device list at `/` is rendered by
//! `status_page` from `console/list.html`. Every page and script is open without the token
//! (they hold no data); the data comes from the API, which needs it.

use actix_web::HttpResponse;

/// Scripts only from this server, requests only to it, no inline script or style, no frames.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// One static file of the console.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The device list's script (`/status.js`, the name the first console had).
pub(crate) const LIST_JS: &str = concat!(
    include_str!("console/common.js"),
    include_str!("console/list.js")
);

pub(crate) const ASSETS: [Asset; 6] = [
    Asset {
        path: "/status.js",
        content_type: JS,
        body: LIST_JS,
    },
    Asset {
        path: "/device",
        content_type: HTML,
        body: include_str!("console/device.html"),
    },
    Asset {
        path: "/device.js",
        content_type: JS,
        body: concat!(
            include_str!("console/common.js"),
            include_str!("console/device.js")
        ),
    },
    Asset {
        path: "/gateway",
        content_type: HTML,
        body: include_str!("console/gateway.html"),
    },
    Asset {
        path: "/gateway.js",
        content_type: JS,
        body: concat!(
            include_str!("console/common.js"),
            include_str!("console/gateway.js")
        ),
    },
    Asset {
        path: "/console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("console/console.css"),
    },
];

/// Whether `path` is one of the console's files (open without the token).
pub(crate) fn is_asset(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

pub(crate) async fn serve(asset: Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-cache"))
        .body(asset.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_script_builds_markup_from_strings() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!asset.body.contains(sink), "{} uses {sink}", asset.path);
            }
            assert!(
                !asset.body.contains("localStorage"),
                "{}: the token stays in the tab",
                asset.path
            );
        }
    }

    #[test]
    fn every_page_loads_exactly_its_own_script_and_the_stylesheet() {
        for (page, script) in [("/device", "/device.js"), ("/gateway", "/gateway.js")] {
            let html = ASSETS.iter().find(|a| a.path == page).unwrap().body;
            assert_eq!(html.matches("<script").count(), 1, "{page}");
            assert!(
                html.contains(&format!(r#"<script src="{script}"></script>"#)),
                "{page}"
            );
            assert!(
                html.contains(r#"<link rel="stylesheet" href="/console.css">"#),
                "{page}"
            );
            assert!(
                !html.contains("style="),
                "{page}: styles are in /console.css (CSP)"
            );
        }
    }
}
