//! The dashboard: a static page served at `/`, built into the binary.
//!
//! The page (`dashboard/index.html`, `index.css`, `index.js`: plain HTML,
//! CSS and JavaScript, no framework, no build step, nothing loaded from
//! elsewhere) reads the router API from the browser and shows the services
//! and their instances (late ones in red, with the heartbeat's age), the
//! router's health, live request rates per service and the router log. It
//! carries the `?token=` of its own address over to every API call, so with a
//! `routerToken` the operator opens `/?token=<routerToken>`.
//!
//! The files hold no data, so they are served without a token (like Node's
//! static files); the API calls they make are what the token guards. A
//! refused API call is shown in the page ("router API refused: check
//! ?token="), never as a blank page.

/// The route strings the router registers for the dashboard, as Node's
/// hydra-router does (Node also registered Bootstrap's glyph fonts; this page
/// needs none).
pub const ROUTES: [&str; 3] = ["[get]/", "[get]/index.css", "[get]/index.js"];

const INDEX_HTML: &[u8] = include_bytes!("dashboard/index.html");
const INDEX_CSS: &[u8] = include_bytes!("dashboard/index.css");
const INDEX_JS: &[u8] = include_bytes!("dashboard/index.js");

/// The page's Content-Security-Policy: its own script, style and API only.
/// No inline script or style, no frames, no forms posting elsewhere.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                        img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Its canonical path (`/` for the page).
    pub path: &'static str,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The bytes to send.
    pub body: &'static [u8],
    /// `Cache-Control` header value. `no-cache`: browsers keep the file but
    /// revalidate it (see [`Asset::etag`]), so a new router version's page is
    /// picked up at once.
    pub cache_control: &'static str,
    etag: u64,
}

impl Asset {
    /// A strong `ETag` header value for the file's content (quoted).
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.etag)
    }

    /// Whether a request's `If-None-Match` header value names this content,
    /// so the answer can be `304 Not Modified` without a body.
    pub fn not_modified(&self, if_none_match: Option<&str>) -> bool {
        let Some(header) = if_none_match else { return false };
        let etag = self.etag();
        header
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
    }

    /// Every header to send with the file: content type, cache policy, ETag,
    /// and for the page a Content-Security-Policy and no Referer (the page's
    /// address may carry the token, and the router's Referer fallback must
    /// not see it).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Content-Type", self.content_type.to_owned()),
            ("Cache-Control", self.cache_control.to_owned()),
            ("ETag", self.etag()),
            ("X-Content-Type-Options", "nosniff".to_owned()),
        ];
        if self.content_type.starts_with("text/html") {
            headers.push(("Content-Security-Policy", PAGE_CSP.to_owned()));
            headers.push(("Referrer-Policy", "no-referrer".to_owned()));
            headers.push(("X-Frame-Options", "DENY".to_owned()));
        }
        headers
    }
}

/// The dashboard file at `path` (`/`, `/index.html`, `/index.js`,
/// `/index.css`; a query string is ignored), or `None`.
pub fn asset(path: &str) -> Option<Asset> {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let (path, content_type, body) = match path {
        "/" | "/index.html" => ("/", "text/html; charset=utf-8", INDEX_HTML),
        "/index.css" => ("/index.css", "text/css; charset=utf-8", INDEX_CSS),
        "/index.js" => ("/index.js", "text/javascript; charset=utf-8", INDEX_JS),
        _ => return None,
    };
    Some(Asset {
        path,
        content_type,
        body,
        cache_control: "no-cache",
        etag: fnv1a(body),
    })
}

/// FNV-1a, 64 bits: a content hash for the ETag (not a security feature).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> &'static str {
        std::str::from_utf8(asset(path).expect("asset").body).expect("UTF-8")
    }

    #[test]
    fn serves_the_page_and_its_files_under_nodes_route_names() {
        assert_eq!(asset("/").expect("page").body, asset("/index.html").expect("page").body);
        assert_eq!(asset("/?token=abc").expect("page").path, "/");
        assert!(asset("/").expect("page").content_type.starts_with("text/html"));
        assert!(asset("/index.css").expect("css").content_type.starts_with("text/css"));
        assert!(
            asset("/index.js")
                .expect("js")
                .content_type
                .starts_with("text/javascript")
        );
        for missing in [
            "",
            "/index",
            "/index.js/",
            "/../index.js",
            "/fonts/glyphicons-halflings-regular.woff",
            "/v1/router/health",
        ] {
            assert!(asset(missing).is_none(), "{missing}");
        }
        for route in ROUTES {
            let path = route.strip_prefix("[get]").expect("a [get] route");
            assert!(asset(path).is_some(), "{route} has no asset");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for path in ["/", "/index.css", "/index.js"] {
            let body = text(path);
            let elsewhere = body.replace("'http://www.w3.org/2000/svg'", "");
            for scheme in ["http:", "https:", "ws:", "wss:", "url(", "@import", "=\"//", "='//"] {
                assert!(!elsewhere.contains(scheme), "{path} refers elsewhere ({scheme})");
            }
        }
        let page = text("/");
        assert!(page.contains("<script src=\"index.js\" defer></script>"));
        assert!(page.contains("<link rel=\"stylesheet\" href=\"index.css\">"));
        assert!(
            !page.contains("<script>"),
            "inline script would break the Content-Security-Policy"
        );
        assert!(
            !page.contains("style="),
            "inline style would break the Content-Security-Policy"
        );
    }

    #[test]
    fn every_element_the_script_looks_up_is_in_the_page() {
        let page = text("/");
        let script = text("/index.js");
        let mut looked_up = 0;
        for (index, _) in script.match_indices("byId('") {
            let rest = &script[index + "byId('".len()..];
            let id = &rest[..rest.find('\'').expect("closing quote")];
            assert!(
                page.contains(&format!("id=\"{id}\"")),
                "index.js looks up #{id}, which index.html lacks"
            );
            looked_up += 1;
        }
        assert!(
            looked_up > 10,
            "found only {looked_up} lookups: has the script changed its helper's name?"
        );
    }

    #[test]
    fn etags_follow_the_content_and_answer_if_none_match() {
        let page = asset("/").expect("page");
        let script = asset("/index.js").expect("js");
        assert_ne!(page.etag(), script.etag());
        assert!(page.not_modified(Some(&page.etag())));
        assert!(page.not_modified(Some(&format!("\"other\", W/{}", page.etag()))));
        assert!(page.not_modified(Some("*")));
        assert!(!page.not_modified(Some(&script.etag())));
        assert!(!page.not_modified(None));
        let headers = page.headers();
        assert!(
            headers
                .iter()
                .any(|(name, value)| *name == "Content-Security-Policy" && value.contains("script-src 'self'"))
        );
        assert!(
            !script
                .headers()
                .iter()
                .any(|(name, _)| *name == "Content-Security-Policy")
        );
    }
}
