//! The web page at `/`: a list of the live streams, read from the JSON API and
//! refreshed every two seconds, with copy buttons for each stream's URLs and a
//! native `<video>` playing its HLS. HTML, CSS and script are in one file
//! (`page.html`) compiled into the binary: no external assets, works offline.
//! If the API needs a token, the page asks for it and keeps it in the browser's
//! local storage.

pub(super) const HTML: &str = include_str!("page.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_self_contained() {
        assert!(HTML.len() < 32 * 1024, "{} bytes", HTML.len());
        for external in ["src=\"http", "href=\"http", "@import", "//cdn"] {
            assert!(!HTML.contains(external), "external asset: {external}");
        }
    }
}
