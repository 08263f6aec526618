//! Base URLs: joining a provider's paths onto one, and showing one to a person.

/// `{base}/{path}`, then `query` pairs, keeping a query string the base URL carries: a proxy
/// configured as `https://proxy.example/v1?tenant=a` must get `…/v1/messages?tenant=a`, not
/// `…/v1?tenant=a/v1/messages` (the path glued into the query), which plain string
/// concatenation gives. One function for every adapter that appends its path to `base_url`.
pub fn endpoint_url(base: &url::Url, path: &str, query: &[(&str, &str)]) -> String {
    let mut url = base.clone();
    let joined = format!("{}/{}", url.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url.to_string()
}

/// What stands in for a hidden part.
const MASK: &str = "***";

/// `raw` with its secrets hidden, for showing a configured URL (`config check`, error
/// messages): the password of its userinfo and every query and fragment value become `***`,
/// so `https://user:secret@proxy/v1?key=abc` shows as `https://user:***@proxy/v1?key=***`.
///
/// Some proxies and Azure-style gateways take their key in the URL (`?key=`, `?api-key=`), and
/// a URL is the one setting an operator pastes whole. Scheme, host, port and path stay as
/// written so the operator can still tell which server is meant. Works on the text, not on a
/// parse: a URL that does not parse (a password holding `/` or `?`, which ends the authority
/// early) is exactly the one an error message quotes, and must be hidden too. A userinfo with
/// no password is hidden whole, because a token alone in the user position
/// (`https://TOKEN@host`) is a common way to pass one.
pub fn redact_url(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 8);
    let rest = match raw.find("://") {
        Some(i) => {
            out.push_str(&raw[..i + 3]);
            &raw[i + 3..]
        }
        None => raw,
    };
    let rest = match userinfo_end(rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(mask(password));
                }
                None => out.push_str(mask(userinfo)),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (before_fragment, fragment) = match rest.split_once('#') {
        Some((before, fragment)) => (before, Some(fragment)),
        None => (rest, None),
    };
    match before_fragment.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(mask(value));
                    }
                    // A bare item (`?sk-abc`) is the value itself.
                    None => out.push_str(mask(pair)),
                }
            }
        }
        None => out.push_str(before_fragment),
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(mask(fragment));
    }
    out
}

fn mask(secret: &str) -> &str {
    if secret.is_empty() { "" } else { MASK }
}

/// Where the userinfo of `rest` (the URL after `scheme://`) ends: the last `@` of the authority,
/// as a URL parser reads it. When what follows that `@` cannot be a `host[:port]`, the
/// password itself held one of the characters that end an authority (`/`, `?`, `#`); then the
/// last `@` anywhere ends it, which at worst hides more than the secret.
fn userinfo_end(rest: &str) -> Option<usize> {
    let authority = &rest[..rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@');
    let host = &authority[at.map_or(0, |a| a + 1)..];
    if plausible_host(host) { at } else { rest.rfind('@').or(at) }
}

/// `host`, `host:port` or `[v6]:port` with a numeric port.
fn plausible_host(host: &str) -> bool {
    let port = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((_, "")) => "",
            Some((_, after)) => match after.strip_prefix(':') {
                Some(port) => port,
                None => return false,
            },
            None => return false,
        },
        None => host.rsplit_once(':').map_or("", |(_, port)| port),
    };
    port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_query() {
        let at = |base: &str, path: &str, query: &[(&str, &str)]| {
            endpoint_url(&url::Url::parse(base).unwrap(), path, query)
        };
        assert_eq!(
            at("https://p.example/v1?tenant=a", "messages", &[]),
            "https://p.example/v1/messages?tenant=a"
        );
        assert_eq!(at("https://p.example/", "/v1/messages", &[]), "https://p.example/v1/messages");
        assert_eq!(
            at("https://p.example/v1beta?tenant=a", "models/m:streamGenerateContent", &[("alt", "sse")]),
            "https://p.example/v1beta/models/m:streamGenerateContent?tenant=a&alt=sse"
        );
        assert_eq!(at("http://h:1/x/", "y", &[("alt", "sse")]), "http://h:1/x/y?alt=sse");
    }

    #[test]
    fn hides_passwords_and_query_values_and_keeps_the_rest() {
        for (raw, shown) in [
            ("https://user:secret@proxy.example/v1", "https://user:***@proxy.example/v1"),
            ("https://user:secret@host/v1?key=abc", "https://user:***@host/v1?key=***"),
            (
                "https://gw.example:8443/openai/deployments/x?api-version=2024-06-01&api-key=abc",
                "https://gw.example:8443/openai/deployments/x?api-version=***&api-key=***",
            ),
            ("https://sk-token@host/v1", "https://***@host/v1"),
            ("https://host/v1?sk-bare&empty=&&x=1", "https://host/v1?***&empty=&&x=***"),
            ("https://host/v1#token=abc", "https://host/v1#***"),
            ("https://host/v1?key=abc#frag", "https://host/v1?key=***#***"),
            ("http://[::1]:11434", "http://[::1]:11434"),
            ("http://u:p@[::1]:11434/api", "http://u:***@[::1]:11434/api"),
            ("user:secret@127.0.0.1:11434", "user:***@127.0.0.1:11434"),
            // Nothing to hide: shown as written, a trailing slash and case included.
            ("https://API.openai.com/v1/", "https://API.openai.com/v1/"),
            ("http://127.0.0.1:11434", "http://127.0.0.1:11434"),
            ("", ""),
            // An `@` in the path or the query is not userinfo.
            ("https://host/models/x@v2?email=a@b.example", "https://host/models/x@v2?email=***"),
        ] {
            assert_eq!(redact_url(raw), shown, "{raw}");
        }
    }

    /// URLs that do not parse are the ones error messages quote: a password holding a
    /// character that ends the authority must still be hidden whole.
    #[test]
    fn hides_passwords_that_end_the_authority_early() {
        for (raw, shown) in [
            ("https://user:abc/def==@proxy/v1", "https://user:***@proxy/v1"),
            ("https://user:pa?ss@proxy/v1?key=k", "https://user:***@proxy/v1?key=***"),
            ("https://user:pa#ss@proxy/v1", "https://user:***@proxy/v1"),
            ("https://user:secret@host:99999999/v1", "https://user:***@host:99999999/v1"),
        ] {
            let got = redact_url(raw);
            assert_eq!(got, shown, "{raw}");
            for secret in ["abc", "def", "pa", "ss", "secret"] {
                assert!(!got.contains(secret), "{secret} shown in {got}");
            }
        }
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        for raw in ["https://u:p@h/v1?key=x#f", "https://t@h", "https://h/?a=1&b", "https://u:a/b@h/p"] {
            let once = redact_url(raw);
            assert_eq!(redact_url(&once), once, "{raw}");
        }
    }
}
