//! The status page at `GET /`: plain HTML and a little vanilla JavaScript, compiled into the
//! binary with `include_str!` (no build step, no external assets). The script polls
//! `/health` and `/api/devices` every 2 seconds and redraws the platform link state and one
//! table row per device (ep, sector, status, last seen, links). Served by `handlers`.

/// `GET /`.
pub const STATUS_HTML: &str = include_str!("status.html");
/// `GET /status.js`.
pub const STATUS_JS: &str = include_str!("status.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_script_and_the_script_polls_both_endpoints() {
        assert!(STATUS_HTML.contains(r#"<script src="/status.js""#));
        assert!(STATUS_HTML.contains(r#"id="devices""#));
        assert!(STATUS_JS.contains("/api/devices"));
        assert!(STATUS_JS.contains("/health"));
        // Device data goes into the DOM as text, never as markup.
        assert!(!STATUS_JS.contains("innerHTML"));
    }
}
