//! Getting a file to where a browser can read it, for a file input.
//!
//! A file input is given files by typing their paths into it (WebDriver's element
//! send keys; several paths joined by `\n`). The path is read by the driver, on the
//! driver's host. A local browser shares this host's disk, so the absolute path is
//! all it needs. A remote one runs on a node with a disk of its own, so the file is
//! sent there first the way Selenium's own clients do it: a zip holding the one file,
//! base64 in a JSON body, POSTed to the session; the answer is the file's path on the
//! node, which is then what gets typed.
//!
//! Measured here (ChromeDriver 148, Selenium Grid 4.20): ChromeDriver answers only
//! the older `POST /session/{id}/file` (`se/file` is an unknown command to it); a
//! Grid answers both — `se/file` itself, `file` by passing it to the node's driver.
//! Both refuse a zip of more than one file. So [`stage`] tries Selenium's own
//! `se/file` first (a Grid keeps the copy in the session's directory and removes it
//! with the session) and ChromeDriver's `file` where that is unknown (the copy goes
//! to the driver's temporary directory).
//!
//! What this does not do: stream. The whole file is read into memory and sent in one
//! request (4/3 of its size again as base64), which suits the documents and images a
//! form takes, not multi-gigabyte files.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use thirtyfour::common::command::{Command, ExtensionCommand};
use thirtyfour::error::{WebDriverError, WebDriverErrorInner};
use thirtyfour::prelude::WebDriver;

/// Why a file could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Reading or packing the file here.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The endpoint refused or failed the upload.
    #[error("sending it to the remote browser's node: {}", crate::summary(.0))]
    WebDriver(WebDriverError),
}

/// The path, as the browser's driver must be given it, of the file at `path` (an
/// absolute path on this host): `path` itself for a local browser, and for a remote
/// one (`remote`) its path on the node after sending it there.
pub async fn stage(driver: &WebDriver, remote: bool, path: &Path) -> Result<String, StageError> {
    if !remote {
        return Ok(path.to_string_lossy().into_owned());
    }
    let payload: Arc<str> = base64::engine::general_purpose::STANDARD
        .encode(zip_one(path)?)
        .into();
    let mut last = None;
    for endpoint in ["/se/file", "/file"] {
        let command = UploadFile {
            endpoint,
            payload: payload.clone(),
        };
        match driver
            .handle()
            .cmd(Command::ExtensionCommand(Box::new(command)))
            .await
        {
            Ok(response) => return response.value::<String>().map_err(StageError::WebDriver),
            Err(e) if unknown_command(&e) => last = Some(e),
            Err(e) => return Err(StageError::WebDriver(e)),
        }
    }
    Err(StageError::WebDriver(last.expect("two endpoints tried")))
}

/// A zip holding the file under its own name, stored (a form's files are usually
/// compressed already, and the node unpacks it at once).
fn zip_one(path: &Path) -> std::io::Result<Vec<u8>> {
    let data = std::fs::read(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(data.len() as u64 >= u32::MAX as u64);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(name, options)
        .map_err(std::io::Error::other)?;
    zip.write_all(&data)?;
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

fn unknown_command(e: &WebDriverError) -> bool {
    matches!(
        e.as_inner(),
        WebDriverErrorInner::UnknownCommand(_) | WebDriverErrorInner::UnknownMethod(_)
    ) || matches!(
        e.as_inner(),
        WebDriverErrorInner::UnknownResponse(404 | 405, _)
    )
}

#[derive(Debug)]
struct UploadFile {
    endpoint: &'static str,
    payload: Arc<str>,
}

impl ExtensionCommand for UploadFile {
    fn parameters_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "file": &*self.payload }))
    }

    fn method(&self) -> http::Method {
        http::Method::POST
    }

    fn endpoint(&self) -> Arc<str> {
        self.endpoint.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The zip holds exactly the one file, by its own name and with its bytes.
    #[test]
    fn the_zip_holds_the_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report 7.csv");
        std::fs::write(&path, b"a,b\n1,2\n").unwrap();
        let bytes = zip_one(&path).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name().unwrap(), "report 7.csv");
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        assert_eq!(content, b"a,b\n1,2\n");
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = zip_one(&dir.path().join("nope")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
