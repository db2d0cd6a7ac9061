//! The map page and its files, and where Leaflet comes from.
//!
//! The page needs no internet. Leaflet is served by the example itself, under
//! `/leaflet/`, from a local copy found when the example starts ([`Page::locate`]):
//!
//! 1. `LEAFLET_DIR`, when set: a directory holding `leaflet.js` and `leaflet.css` (and
//!    `images/`). It is the only place looked at; one without Leaflet (an empty
//!    directory, say) means "no Leaflet".
//! 2. `/usr/share/javascript/leaflet`, from Debian's and Ubuntu's `libjs-leaflet`.
//! 3. The npm package: `node_modules/leaflet/dist` in the current directory or in the
//!    crate's, then `tests/browser/node_modules/leaflet/dist` (which `tests/run.sh`
//!    installs).
//!
//! Without any, the page still works: `app.js` draws the coastlines, the airports and
//! every aircraft on a canvas of its own and says, on the map, how to get Leaflet.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");
const SEA_GEOJSON: &str = include_str!("sea.geojson");

/// Where Debian's (and Ubuntu's) `libjs-leaflet` installs Leaflet.
pub(crate) const DEBIAN_LEAFLET: &str = "/usr/share/javascript/leaflet";

/// Lines of `index.html` that load Leaflet carry this attribute; the page leaves them
/// out when there is no Leaflet to load.
const LEAFLET_MARK: &str = "data-leaflet";

/// A local copy of Leaflet, read into memory when the example starts.
#[derive(Debug)]
pub(crate) struct Leaflet {
    /// The directory it was read from.
    pub(crate) dir: PathBuf,
    /// How it was found: `LEAFLET_DIR`, Debian's package or the npm package.
    pub(crate) found_by: &'static str,
    /// The version `leaflet.js` declares, if it could be read.
    pub(crate) version: Option<String>,
    /// Path under `/leaflet/` to content type and content.
    files: HashMap<String, (&'static str, Bytes)>,
}

impl Leaflet {
    /// Reads Leaflet from `dir`: `leaflet.js`, `leaflet.css`, and the images the CSS
    /// refers to (`images/*.png`, `images/*.svg`). `None` if either file is missing.
    pub(crate) fn read(dir: &Path, found_by: &'static str) -> Option<Leaflet> {
        let js = std::fs::read(dir.join("leaflet.js")).ok()?;
        let css = std::fs::read(dir.join("leaflet.css")).ok()?;
        let version = declared_version(&js);
        let mut files = HashMap::new();
        files.insert(
            "leaflet.js".to_owned(),
            ("text/javascript; charset=utf-8", Bytes::from(js)),
        );
        files.insert(
            "leaflet.css".to_owned(),
            ("text/css; charset=utf-8", Bytes::from(css)),
        );
        if let Ok(images) = std::fs::read_dir(dir.join("images")) {
            for image in images.flatten() {
                let path = image.path();
                let content_type = match path.extension().and_then(OsStr::to_str) {
                    Some("png") => "image/png",
                    Some("svg") => "image/svg+xml",
                    _ => continue,
                };
                let (Some(name), Ok(content)) = (
                    path.file_name().and_then(OsStr::to_str),
                    std::fs::read(&path),
                ) else {
                    continue;
                };
                files.insert(
                    format!("images/{name}"),
                    (content_type, Bytes::from(content)),
                );
            }
        }
        Some(Leaflet {
            dir: dir.to_owned(),
            found_by,
            version,
            files,
        })
    }
}

/// `1.9.4` out of `version="1.9.4"` (npm, minified) or `version = "1.6.0"` (Debian).
fn declared_version(js: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(js).ok()?;
    let at = text.find("version=\"").map(|i| i + "version=\"".len());
    let at = at.or_else(|| text.find("version = \"").map(|i| i + "version = \"".len()))?;
    let version = &text[at..];
    let end = version.find('"')?;
    let version = &version[..end];
    let plausible = !version.is_empty()
        && version.len() <= 20
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    plausible.then(|| version.to_owned())
}

/// The page: `index.html` (with or without Leaflet), its script, style and coastlines,
/// and Leaflet's files when there is a copy. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Page {
    inner: Arc<PageInner>,
}

#[derive(Debug)]
struct PageInner {
    index_html: Bytes,
    leaflet: Option<Leaflet>,
    /// Where Leaflet was looked for, for the log.
    searched: Vec<PathBuf>,
}

impl Page {
    /// Finds Leaflet as the module documentation says: `leaflet_dir` is the value of
    /// `LEAFLET_DIR` (`None`, or empty, when unset).
    pub(crate) fn locate(leaflet_dir: Option<&OsStr>) -> Page {
        let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
        match leaflet_dir.filter(|dir| !dir.is_empty()) {
            Some(dir) => candidates.push((PathBuf::from(dir), "LEAFLET_DIR")),
            None => {
                candidates.push((PathBuf::from(DEBIAN_LEAFLET), "Debian's libjs-leaflet"));
                let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
                let npm = Path::new("node_modules/leaflet/dist");
                let mut npm_dirs = Vec::new();
                if let Ok(current) = std::env::current_dir() {
                    npm_dirs.push(current.join(npm));
                }
                npm_dirs.push(crate_dir.join(npm));
                npm_dirs.push(crate_dir.join("tests/browser").join(npm));
                for dir in npm_dirs {
                    if !candidates.iter().any(|(known, _)| *known == dir) {
                        candidates.push((dir, "the npm package"));
                    }
                }
            }
        }
        let leaflet = candidates
            .iter()
            .find_map(|(dir, found_by)| Leaflet::read(dir, found_by));
        let searched = candidates.into_iter().map(|(dir, _)| dir).collect();
        Page::new(leaflet, searched)
    }

    /// The page with `leaflet`, or with the built-in map when `None`.
    pub(crate) fn new(leaflet: Option<Leaflet>, searched: Vec<PathBuf>) -> Page {
        let index_html = if leaflet.is_some() {
            INDEX_HTML.to_owned()
        } else {
            let mut html = String::with_capacity(INDEX_HTML.len());
            for line in INDEX_HTML.lines() {
                if !line.contains(LEAFLET_MARK) {
                    html.push_str(line);
                    html.push('\n');
                }
            }
            html
        };
        Page {
            inner: Arc::new(PageInner {
                index_html: Bytes::from(index_html),
                leaflet,
                searched,
            }),
        }
    }

    /// The Leaflet the page loads, if any.
    #[allow(dead_code)] // used by tests/aircraft_browser.rs
    pub(crate) fn leaflet(&self) -> Option<&Leaflet> {
        self.inner.leaflet.as_ref()
    }

    /// One line for the log: which map the page shows, and from where.
    pub(crate) fn describe(&self) -> String {
        match &self.inner.leaflet {
            Some(leaflet) => format!(
                "Leaflet {}from {} ({})",
                leaflet
                    .version
                    .as_deref()
                    .map(|v| format!("{v} "))
                    .unwrap_or_default(),
                leaflet.dir.display(),
                leaflet.found_by
            ),
            None => {
                let searched: Vec<String> = self
                    .inner
                    .searched
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect();
                format!(
                    "the built-in simple map: no Leaflet in {} (install libjs-leaflet or the \
                     leaflet npm package, or set LEAFLET_DIR, for the full map)",
                    searched.join(", ")
                )
            }
        }
    }

    /// The file at `path` (`/`, `/app.js`, `/leaflet/leaflet.js`, ...): its content type
    /// and content, or `None` if the page has no such file.
    pub(crate) fn file(&self, path: &str) -> Option<(&'static str, Bytes)> {
        let text = |content: &'static str| Bytes::from_static(content.as_bytes());
        match path {
            "/" | "/index.html" => {
                Some(("text/html; charset=utf-8", self.inner.index_html.clone()))
            }
            "/app.js" => Some(("text/javascript; charset=utf-8", text(APP_JS))),
            "/metrics-panel.js" => Some((
                "text/javascript; charset=utf-8",
                text(include_str!("metrics-panel.js")),
            )),
            "/style.css" => Some(("text/css; charset=utf-8", text(STYLE_CSS))),
            "/sea.geojson" => Some(("application/geo+json", text(SEA_GEOJSON))),
            _ => {
                let name = path.strip_prefix("/leaflet/")?;
                let (content_type, content) = self.inner.leaflet.as_ref()?.files.get(name)?;
                Some((content_type, content.clone()))
            }
        }
    }
}
