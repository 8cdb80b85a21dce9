//! Directory listings (`autoindex on`): an HTML table of the entries,
//! directories first, then files, each group sorted by name; names are
//! HTML-escaped and links percent-encoded. Dot files are left out, as
//! nginx does.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::http::path::{html_escape, percent_encode_path};

struct Entry {
    name: String,
    is_dir: bool,
    size: u64,
    modified: SystemTime,
}

/// The listing of `dir`, served at the URL path `url_path` (ends in `/`).
pub fn render(url_path: &str, dir: &Path) -> io::Result<Vec<u8>> {
    let mut entries = read_entries(dir)?;
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    let title = html_escape(url_path);
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2em}}td{{padding:.15em 1.5em .15em 0}}\
         td.size{{text-align:right}}</style></head>\n<body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th align=\"left\">Name</th><th align=\"left\">Last modified</th><th>Size</th></tr>\n"
    );
    if url_path != "/" {
        html.push_str(
            "<tr><td><a href=\"../\">../</a></td><td></td><td class=\"size\">-</td></tr>\n",
        );
    }
    for entry in &entries {
        html.push_str(&row(entry));
    }
    html.push_str("</table>\n</body></html>\n");
    Ok(html.into_bytes())
}

fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let Ok(name) = item.file_name().into_string() else {
            continue; // not UTF-8: no URL path can name it
        };
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks, as the file would be served.
        let Ok(meta) = fs::metadata(item.path()) else {
            continue;
        };
        entries.push(Entry {
            name,
            is_dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    Ok(entries)
}

fn row(entry: &Entry) -> String {
    let slash = if entry.is_dir { "/" } else { "" };
    let href = percent_encode_path(&entry.name);
    let name = html_escape(&entry.name);
    let time = DateTime::<Utc>::from(entry.modified).format("%d-%b-%Y %H:%M");
    let size = if entry.is_dir {
        "-".to_owned()
    } else {
        entry.size.to_string()
    };
    format!(
        "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td><td>{time}</td>\
         <td class=\"size\">{size}</td></tr>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_directories_first_escaped_without_dot_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b <&>.txt"), b"12345").unwrap();
        fs::write(dir.path().join("a.txt"), b"1").unwrap();
        fs::write(dir.path().join(".hidden"), b"").unwrap();
        fs::create_dir(dir.path().join("zdir")).unwrap();
        let html = String::from_utf8(render("/files/", dir.path()).unwrap()).unwrap();
        let zdir = html.find("zdir/").unwrap();
        let a = html.find(">a.txt<").unwrap();
        let b = html.find("b &lt;&amp;&gt;.txt").unwrap();
        assert!(zdir < a && a < b, "{html}");
        assert!(html.contains("href=\"b%20%3C%26%3E.txt\""), "{html}");
        assert!(html.contains("href=\"../\""));
        assert!(!html.contains(".hidden"));
        assert!(html.contains(">5</td>"));
    }

    #[test]
    fn root_has_no_parent_link() {
        let dir = tempfile::tempdir().unwrap();
        let html = String::from_utf8(render("/", dir.path()).unwrap()).unwrap();
        assert!(!html.contains("../"));
    }
}
