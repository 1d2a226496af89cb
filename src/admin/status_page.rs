//! The status page at `GET /`: plain HTML and a little vanilla JavaScript, compiled into the
//! binary with `include_str!` (no build step, no external assets). The first paint is rendered
//! here, on the server ([`render`]): the summary and one table row per device are in the HTML,
//! so the page shows data without JavaScript (a screenshot, `curl`, a text browser). The script
//! then polls `/health` and `/api/devices` every 2 seconds and redraws the same elements.
//! With an admin token configured, a request without it gets the page without device rows;
//! the script asks for the token once, keeps it in the tab's `sessionStorage` and sends it as
//! `Authorization: Bearer` on every fetch (`admin::auth`).
//! Device data comes from the network, so every value is HTML-escaped ([`escape`]). Served by
//! `handlers`.

use serde_json::Value;

use super::health::HealthView;
use crate::device_object::DeviceObject;
use crate::registry::Registration;
use crate::time::rfc3339_ms;

/// The page template: `{{name}}` markers are replaced by [`render`].
const STATUS_HTML: &str = include_str!("console/list.html");
#[cfg(test)]
use super::pages::LIST_JS as STATUS_JS;

/// `GET /`: the page with `health` and the first `devices` (of `total`) filled in, as the script
/// would draw them (the "last seen" column relative to `now_ms`).
pub(crate) fn render(
    health: &HealthView,
    devices: &[&Registration],
    total: u64,
    now_ms: u64,
) -> String {
    let up_down = |up: bool| if up { "up" } else { "down" };
    let (platform, platform_class) = match (health.platform.configured, health.platform.connected) {
        (false, _) => ("not configured", ""),
        (true, true) => ("connected", "up"),
        (true, false) => ("disconnected", "down"),
    };
    // Drawn from the device object itself, the JSON the script draws from, so both paints agree.
    let rows: String = devices
        .iter()
        .filter_map(|reg| {
            let object = serde_json::to_value(DeviceObject(reg)).ok()?;
            Some(device_row(&object, reg.seen_at_ms(), now_ms))
        })
        .collect();
    let more = if total > devices.len() as u64 {
        format!("showing {} of {total} devices", devices.len())
    } else {
        String::new()
    };
    // Markers are replaced in one pass over the template, so a value that contains a marker
    // (all values are escaped, but `{{` is not markup) is never expanded.
    let values = [
        ("gateway-class", escape(up_down(health.status == "up"))),
        ("gateway-status", escape(&health.status)),
        ("registrations", health.registrations.to_string()),
        ("platform-class", platform_class.to_string()),
        ("platform", platform.to_string()),
        ("updated", format!("as of {}", rfc3339_ms(now_ms))),
        ("devices", rows),
        ("more", more),
    ];
    fill(STATUS_HTML, &values)
}

/// Replace each `{{name}}` of `template` by its value; unknown markers stay as they are.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    // Bounded: each turn consumes at least the marker's `{{`.
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (v, end))
        }) {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `status.js`'s `linkText`: a link object as link-format-like text.
fn link_text(link: &Value) -> String {
    let mut attrs: Vec<String> = Vec::new();
    for name in ["rt", "if", "ct"] {
        match &link[name] {
            Value::Null => {}
            Value::String(v) => attrs.push(format!("{name}={v}")),
            other => attrs.push(format!("{name}={other}")),
        }
    }
    if link["obs"] == Value::Bool(true) {
        attrs.push("obs".into());
    }
    if let Some(extra) = link["attrs"].as_object() {
        for (name, value) in extra {
            match value {
                Value::Bool(true) => attrs.push(name.clone()),
                Value::String(v) => attrs.push(format!("{name}={v}")),
                other => attrs.push(format!("{name}={other}")),
            }
        }
    }
    let href = link["href"].as_str().unwrap_or_default();
    if attrs.is_empty() {
        format!("<{href}>")
    } else {
        format!("<{href}>;{}", attrs.join(";"))
    }
}

/// One `<tr>`, the same cells and classes as `status.js` draws, from a device object.
fn device_row(d: &Value, seen_at_ms: u64, now_ms: u64) -> String {
    let ep = d["ep"].as_str().unwrap_or_default();
    let mut href = format!("/device?ep={}", component(ep));
    if let Some(sector) = d["d"].as_str() {
        href.push_str(&format!("&d={}", component(sector)));
    }
    let status = d["status"].as_u64().unwrap_or(0);
    let up = status == 1;
    let links: Vec<String> = d["links"]
        .as_array()
        .map(|links| links.iter().map(|l| escape(&link_text(l))).collect())
        .unwrap_or_default();
    format!(
        "<tr class=\"device\" data-ep=\"{ep}\" data-status=\"{status}\"><td class=\"ep\"><a href=\"{href}\">{ep}</a></td>\
         <td class=\"d\">{dd}</td><td class=\"status {ud}\">{ud}</td>\
         <td class=\"seen\" title=\"{seen_iso}\">{seen}</td><td class=\"expires\">{expires}</td>\
         <td class=\"base\">{base}</td><td class=\"identity\">{identity}</td>\
         <td class=\"links\">{links}</td></tr>\n",
        ep = escape(ep),
        href = escape(&href),
        dd = escape(d["d"].as_str().unwrap_or("")),
        ud = if up { "up" } else { "down" },
        seen_iso = escape(&rfc3339_ms(seen_at_ms)),
        seen = ago(now_ms.saturating_sub(seen_at_ms)),
        expires = escape(d["expires_at"].as_str().unwrap_or_default()),
        base = escape(d["base"].as_str().unwrap_or_default()),
        identity = escape(d["dtls_identity"].as_str().unwrap_or("")),
        links = links.join("<br>"),
    )
}

/// A query value as `encodeURIComponent` writes it.
fn component(value: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(value, KEEP).to_string()
}

/// `status.js`'s `ago`: seconds up to 2 min, minutes up to 2 h, then hours.
fn ago(elapsed_ms: u64) -> String {
    let s = (elapsed_ms + 500) / 1000;
    if s < 120 {
        format!("{s} s ago")
    } else if s < 7200 {
        format!("{} min ago", (s + 30) / 60)
    } else {
        format!("{} h ago", (s + 1800) / 3600)
    }
}

/// Text as HTML element content or a quoted attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

    #[test]
    fn the_token_travels_in_a_header_and_stays_in_the_tab() {
        assert!(STATUS_JS.contains(r#""Authorization": "Bearer " + token"#));
        assert!(STATUS_JS.contains("sessionStorage.setItem"));
        assert!(!STATUS_JS.contains("localStorage"), "kept for the tab only");
        // The token input has no name: a form submit can never carry it into a URL.
        let input = &STATUS_HTML[STATUS_HTML.find(r#"<input id="token-input""#).unwrap()..];
        let input = &input[..input.find('>').unwrap()];
        assert!(!input.contains("name="), "{input}");
        // Two fetches, `api` and the event stream, and both send the header.
        assert_eq!(STATUS_JS.matches("fetch(").count(), 2);
        assert_eq!(STATUS_JS.matches("authHeaders()").count(), 3);
    }

    #[test]
    fn a_row_shows_the_dtls_identity_escaped_and_the_base_with_its_scheme() {
        let mut reg = crate::device_object::tests::registration("secure");
        reg.identity = Some("<node1>".into());
        reg.base = "coaps://127.0.0.1:40000".into();
        let object = serde_json::to_value(DeviceObject(&reg)).unwrap();
        let row = device_row(&object, reg.updated_at_ms, reg.updated_at_ms);
        assert!(
            row.contains(r#"<td class="base">coaps://127.0.0.1:40000</td><td class="identity">&lt;node1&gt;</td>"#),
            "{row}"
        );
        let plain = crate::device_object::tests::registration("plain");
        let object = serde_json::to_value(DeviceObject(&plain)).unwrap();
        let row = device_row(&object, 0, 0);
        assert!(row.contains(r#"<td class="identity"></td>"#), "{row}");
        assert!(STATUS_HTML.contains("<th>base</th><th>DTLS identity</th>"));
        assert!(STATUS_JS.contains(r#""identity");"#));
    }

    #[test]
    fn escaping_and_filling_never_let_data_become_markup() {
        assert_eq!(
            escape(r#"<script>alert("x&'y")</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&quot;)&lt;/script&gt;"
        );
        let values = [("a", "{{b}}".to_string()), ("b", "B".to_string())];
        assert_eq!(fill("x{{a}}y{{b}}z{{c}}", &values), "x{{b}}yBz{{c}}");
        assert_eq!(fill("{{", &values), "{{");
        assert_eq!(ago(0), "0 s ago");
        assert_eq!(ago(125_000), "2 min ago");
        assert_eq!(ago(3 * 3_600_000), "3 h ago");
    }
}
