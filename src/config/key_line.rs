//! Where a dotted key (`rd.listen`) is written in the YAML text, so that a value refused after
//! parsing (a range, an address) is reported at its line like a syntax error is.
//!
//! serde-saphyr reports positions only for its own errors, not for values our validation
//! refuses later, so this scans the text itself. It understands the block style config.yaml is
//! written in (nested `key:` lines, comments, blank lines, quoted keys, a leading `---`); a key
//! written in flow style (`rd: {listen: [..]}`) is reported at the line of the outermost block
//! key that holds it. A key that is not in the text (its default value was refused) has no line.

/// The 1-based line of `dotted` (`section.key`, any depth) in `yaml`, or of the deepest of its
/// parents written in flow style; `None` when the key is not written at all.
pub(crate) fn line_of_key(yaml: &str, dotted: &str) -> Option<usize> {
    let path: Vec<&str> = dotted.split('.').collect();
    let mut depth = 0;
    // Indentation of the mapping whose keys we are matching at `depth`; None: not yet known
    // (the first key line inside the parent sets it).
    let mut indent: Option<usize> = Some(0);
    let mut parent_indent: Option<usize> = None;
    for (n, raw) in yaml.lines().enumerate() {
        let line = strip_comment(raw);
        let content = line.trim_start();
        if content.is_empty() || content == "---" || content.starts_with("- ") {
            continue;
        }
        let this_indent = line.len() - content.len();
        // Leaving the parent's block: the key is not under it.
        if let Some(p) = parent_indent {
            if this_indent <= p {
                return None;
            }
        }
        let want = *indent.get_or_insert(this_indent);
        if this_indent != want {
            continue;
        }
        let Some((key, rest)) = split_key(content) else {
            continue;
        };
        if key != path[depth] {
            continue;
        }
        if depth + 1 == path.len() {
            return Some(n + 1);
        }
        if rest.starts_with('{') {
            // Flow style: the child is on this line (or the lines it spans).
            return Some(n + 1);
        }
        parent_indent = Some(this_indent);
        indent = None;
        depth += 1;
    }
    None
}

/// `line` without a trailing `# comment` (a `#` inside quotes is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') if prev_space => return line[..i].trim_end(),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line.trim_end()
}

/// `key: rest` → (`key` unquoted, `rest` trimmed); None for a line that is not a mapping key.
fn split_key(content: &str) -> Option<(&str, &str)> {
    let (key, rest) = if let Some(q @ ('"' | '\'')) = content.chars().next() {
        let end = content[1..].find(q)? + 1;
        let after = content[end + 1..].trim_start();
        (&content[1..end], after.strip_prefix(':')?)
    } else {
        let colon = content.find(": ").or_else(|| {
            // `key:` at the end of the line opens a block.
            content.ends_with(':').then(|| content.len() - 1)
        })?;
        (content[..colon].trim_end(), &content[colon + 1..])
    };
    Some((key, rest.trim()))
}

#[cfg(test)]
mod tests {
    use super::line_of_key;

    const YAML: &str = "\
# coap-gateway config
gateway:
  id: gw   # the name
  data_dir: /proc/nope

rd:
  # where the RD listens
  listen: [\"0.0.0.0:5683\", \"bad\"]
  default_lifetime_s: 90000
coap:
  block_size: 100
limits: {max_links: 0}
\"platform\":
    'url': \"ws://x#y\"
";

    #[test]
    fn finds_nested_keys_at_their_line() {
        assert_eq!(line_of_key(YAML, "gateway.id"), Some(3));
        assert_eq!(line_of_key(YAML, "gateway.data_dir"), Some(4));
        assert_eq!(line_of_key(YAML, "rd.listen"), Some(8));
        assert_eq!(line_of_key(YAML, "rd.default_lifetime_s"), Some(9));
        assert_eq!(line_of_key(YAML, "coap.block_size"), Some(11));
        assert_eq!(line_of_key(YAML, "coap"), Some(10));
    }

    #[test]
    fn quoted_keys_other_indents_and_flow_style() {
        assert_eq!(line_of_key(YAML, "platform.url"), Some(14));
        // Flow style: the line of the mapping that holds it.
        assert_eq!(line_of_key(YAML, "limits.max_links"), Some(12));
    }

    #[test]
    fn a_key_not_written_has_no_line() {
        assert_eq!(line_of_key(YAML, "pinger.interval_s"), None);
        // Not under its own section, even if a sibling section has the same key name.
        assert_eq!(line_of_key(YAML, "gateway.listen"), None);
        assert_eq!(line_of_key(YAML, "rd.block_size"), None);
        assert_eq!(line_of_key("", "rd.listen"), None);
    }

    #[test]
    fn a_key_in_a_comment_or_a_value_is_not_the_key() {
        let yaml = "# rd:\n#   listen: x\nx: \"rd: listen:\"\nrd:\n  listen: []\n";
        assert_eq!(line_of_key(yaml, "rd.listen"), Some(5));
    }
}
