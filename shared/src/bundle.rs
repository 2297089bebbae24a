//! Bundle files: a signed cluster state and its app blobs as a tar of an OCI image layout
//! (DESIGN.md "Wire formats → Bundle file"), so standard OCI tools can carry it into a
//! registry and across an air gap.
//!
//! Reading checks everything before returning anything: the tar's shape (no links, no paths
//! outside the layout, no duplicates, no truncation, size and entry caps), every OCI blob
//! against its digest, the manifest, the envelope (`verify`) and every app blob against the
//! signed state. It must not touch the file system: callers hand it a reader or a writer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::blob::AppBlob;
use crate::digest::Digest;
use crate::keys::TrustRoot;
use crate::verify::{LastAccepted, Policy, Rejection, VerifiedState};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const OCI_INDEX_FILE: &str = "index.json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const ARTIFACT_TYPE_BUNDLE: &str = "application/vnd.flotilla.bundle.v1";
pub const MEDIA_TYPE_STATE: &str = "application/vnd.flotilla.cluster-state.v1+dsse+json";
pub const MEDIA_TYPE_APP_BLOB: &str = "application/vnd.flotilla.app-blob.v1+json";
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// The OCI empty descriptor's content: the two bytes `{}`.
pub const EMPTY_CONFIG: &[u8] = b"{}";
/// The title of the envelope layer.
pub const STATE_TITLE: &str = "cluster-state.dsse.json";

/// The title of an app's blob layer.
pub fn app_blob_title(app: &str) -> String {
    format!("{app}.app-blob.json")
}

/// Why a bundle file could not be written or is refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("writing bundle file: {0}")]
    Write(#[source] std::io::Error),
    #[error("reading bundle file: {0}")]
    Read(#[source] std::io::Error),
    #[error("bundle file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bundle file has more than the limit of {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("bundle file is not a complete tar archive: {0}")]
    Tar(String),
    #[error("bundle file entry {path:?} is refused: {reason}")]
    Entry { path: String, reason: String },
    #[error("bundle file is not a flotilla OCI layout: {0}")]
    Layout(String),
    #[error("bundle file blob {path} does not match its digest (it has {got})")]
    CorruptBlob { path: String, got: Digest },
    #[error("bundle file has no blob {digest} for app {app}")]
    MissingBlob { app: String, digest: Digest },
    #[error("bundle is rejected: {0}")]
    Rejected(#[from] Rejection),
}

/// An app blob that matched its digest and size in the signed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBlob {
    pub app: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub blob: AppBlob,
}

/// Everything in a bundle file, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    pub state: VerifiedState,
    /// The envelope exactly as it was in the file.
    pub envelope: Vec<u8>,
    /// One per app of the state, in the state's order.
    pub blobs: Vec<VerifiedBlob>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

fn descriptor(media_type: &str, bytes: &[u8], title: Option<&str>) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: title
            .map(|t| BTreeMap::from([(ANNOTATION_TITLE.to_owned(), t.to_owned())]))
            .unwrap_or_default(),
    }
}

/// Writes a bundle file: the envelope's bytes and, per app, the blob's bytes (in the order
/// of the state's apps). The output is deterministic: same input, same bytes.
pub fn write_bundle<W: Write>(
    out: W,
    envelope: &[u8],
    blobs: &[(&str, &[u8])],
) -> Result<W, BundleError> {
    let mut layers = vec![descriptor(MEDIA_TYPE_STATE, envelope, Some(STATE_TITLE))];
    let mut contents: BTreeMap<Digest, &[u8]> = BTreeMap::new();
    contents.insert(Digest::of(envelope), envelope);
    contents.insert(Digest::of(EMPTY_CONFIG), EMPTY_CONFIG);
    for (app, bytes) in blobs {
        layers.push(descriptor(
            MEDIA_TYPE_APP_BLOB,
            bytes,
            Some(&app_blob_title(app)),
        ));
        contents.insert(Digest::of(bytes), bytes);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
        artifact_type: Some(ARTIFACT_TYPE_BUNDLE.to_owned()),
        config: descriptor(MEDIA_TYPE_EMPTY, EMPTY_CONFIG, None),
        layers,
    };
    let manifest = serde_json::to_vec(&manifest).expect("a manifest always serializes");
    let mut manifest_descriptor = descriptor(MEDIA_TYPE_MANIFEST, &manifest, None);
    manifest_descriptor.artifact_type = Some(ARTIFACT_TYPE_BUNDLE.to_owned());
    contents.insert(Digest::of(&manifest), &manifest);
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_INDEX.to_owned()),
        manifests: vec![manifest_descriptor],
    };
    let index = serde_json::to_vec(&index).expect("an index always serializes");
    let layout = serde_json::to_vec(&LayoutMarker {
        image_layout_version: "1.0.0".to_owned(),
    })
    .expect("the layout marker always serializes");

    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    append_file(&mut tar, OCI_LAYOUT_FILE, &layout)?;
    append_file(&mut tar, OCI_INDEX_FILE, &index)?;
    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    for (digest, bytes) in &contents {
        append_file(&mut tar, &format!("blobs/sha256/{}", digest.hex()), bytes)?;
    }
    tar.into_inner().map_err(BundleError::Write)
}

fn header(entry_type: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(entry_type);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<(), BundleError> {
    let mut header = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
    tar.append_data(&mut header, path, bytes)
        .map_err(BundleError::Write)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), BundleError> {
    let mut header = header(tar::EntryType::Directory, 0, 0o755);
    tar.append_data(&mut header, path, std::io::empty())
        .map_err(BundleError::Write)
}

/// Reads and verifies a bundle file with the default `Policy`. See `Policy::read_bundle`.
pub fn read_bundle(
    input: impl Read,
    trust_root: &TrustRoot,
    expected_cluster: &str,
    last_accepted: Option<&LastAccepted>,
    now: Timestamp,
) -> Result<VerifiedBundle, BundleError> {
    Policy::default().read_bundle(input, trust_root, expected_cluster, last_accepted, now)
}

/// A file of the layout, by the path it must have.
enum LayoutPath {
    Dir,
    LayoutMarker,
    Index,
    Blob(Digest),
}

/// Maps a tar path onto the layout, refusing anything that is not part of one.
fn classify(path: &Path, is_dir: bool) -> Result<LayoutPath, String> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                parts.push(part.to_str().ok_or("path is not UTF-8")?);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("path leaves the layout (\"..\")".to_owned()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("path is absolute".to_owned());
            }
        }
    }
    match (parts.as_slice(), is_dir) {
        ([] | ["blobs"] | ["blobs", "sha256"], true) => Ok(LayoutPath::Dir),
        ([OCI_LAYOUT_FILE], false) => Ok(LayoutPath::LayoutMarker),
        ([OCI_INDEX_FILE], false) => Ok(LayoutPath::Index),
        (["blobs", "sha256", hex], false) => Digest::from_hex(hex)
            .map(LayoutPath::Blob)
            .map_err(|_| "blob file name is not 64 lowercase hex characters".to_owned()),
        _ => Err("not part of a flotilla OCI layout".to_owned()),
    }
}

/// The files of a layout, read from a tar that passed every structural check.
struct LayoutFiles {
    marker: Vec<u8>,
    index: Vec<u8>,
    blobs: BTreeMap<Digest, Vec<u8>>,
}

impl Policy {
    /// Reads a bundle file and verifies all of it: tar structure, every OCI blob against its
    /// digest, the manifest, the signed state (as `Policy::verify`) and every app blob against
    /// the state. Nothing is returned unless everything holds.
    pub fn read_bundle(
        &self,
        input: impl Read,
        trust_root: &TrustRoot,
        expected_cluster: &str,
        last_accepted: Option<&LastAccepted>,
        now: Timestamp,
    ) -> Result<VerifiedBundle, BundleError> {
        let mut bytes = Vec::new();
        input
            .take(self.max_bundle_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(BundleError::Read)?;
        if bytes.len() as u64 > self.max_bundle_bytes {
            return Err(BundleError::TooLarge {
                limit: self.max_bundle_bytes,
            });
        }
        let files = self.read_tar(&bytes)?;
        self.check_layout(files, trust_root, expected_cluster, last_accepted, now)
    }

    fn read_tar(&self, bytes: &[u8]) -> Result<LayoutFiles, BundleError> {
        let tar_error = |e: std::io::Error| BundleError::Tar(e.to_string());
        let mut archive = tar::Archive::new(bytes);
        let mut seen = BTreeSet::new();
        let mut marker = None;
        let mut index = None;
        let mut blobs = BTreeMap::new();
        let mut end_of_data = 0u64;
        let mut count = 0usize;
        for entry in archive.entries().map_err(tar_error)? {
            let mut entry = entry.map_err(tar_error)?;
            count += 1;
            if count > self.max_bundle_entries {
                return Err(BundleError::TooManyEntries {
                    limit: self.max_bundle_entries,
                });
            }
            let path = entry.path().map_err(tar_error)?.into_owned();
            let shown = path.to_string_lossy().into_owned();
            let refuse = |reason: &str| BundleError::Entry {
                path: shown.clone(),
                reason: reason.to_owned(),
            };
            let entry_type = entry.header().entry_type();
            let is_dir = match entry_type {
                tar::EntryType::Regular => false,
                tar::EntryType::Directory => true,
                tar::EntryType::Symlink => return Err(refuse("symbolic links are not allowed")),
                tar::EntryType::Link => return Err(refuse("hard links are not allowed")),
                _ => return Err(refuse("only regular files and directories are allowed")),
            };
            let kind = classify(&path, is_dir).map_err(|reason| refuse(&reason))?;
            let size = entry.size();
            let limit = match kind {
                LayoutPath::Dir => 0,
                LayoutPath::LayoutMarker | LayoutPath::Index => 64 << 10,
                LayoutPath::Blob(_) => self.max_blob_bytes.max(self.max_envelope_bytes),
            };
            if size > limit {
                return Err(refuse(&format!(
                    "{size} bytes, more than the limit of {limit}"
                )));
            }
            end_of_data = entry.raw_file_position() + size.div_ceil(512) * 512;
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(tar_error)?;
            if content.len() as u64 != size {
                return Err(BundleError::Tar(format!("entry {shown:?} is truncated")));
            }
            // Duplicates are compared on the layout meaning, so `./index.json` and
            // `index.json` are one entry.
            let key = match &kind {
                LayoutPath::Dir => format!("dir:{shown}"),
                LayoutPath::LayoutMarker => OCI_LAYOUT_FILE.to_owned(),
                LayoutPath::Index => OCI_INDEX_FILE.to_owned(),
                LayoutPath::Blob(digest) => digest.to_string(),
            };
            if !seen.insert(key) {
                return Err(refuse("the entry appears twice"));
            }
            match kind {
                LayoutPath::Dir => {}
                LayoutPath::LayoutMarker => marker = Some(content),
                LayoutPath::Index => index = Some(content),
                LayoutPath::Blob(digest) => {
                    let got = Digest::of(&content);
                    if got != digest {
                        return Err(BundleError::CorruptBlob { path: shown, got });
                    }
                    blobs.insert(digest, content);
                }
            }
        }
        // A tar ends with at least two zero blocks. Without them the file was cut short,
        // possibly at an entry boundary where nothing else would notice.
        let rest = usize::try_from(end_of_data)
            .ok()
            .and_then(|end| bytes.get(end..))
            .unwrap_or_default();
        if rest.len() < 1024 || rest.iter().any(|b| *b != 0) {
            return Err(BundleError::Tar(
                "the end-of-archive marker is missing (truncated or trailing data)".to_owned(),
            ));
        }
        Ok(LayoutFiles {
            marker: marker
                .ok_or_else(|| BundleError::Layout("oci-layout is missing".to_owned()))?,
            index: index.ok_or_else(|| BundleError::Layout("index.json is missing".to_owned()))?,
            blobs,
        })
    }

    fn check_layout(
        &self,
        files: LayoutFiles,
        trust_root: &TrustRoot,
        expected_cluster: &str,
        last_accepted: Option<&LastAccepted>,
        now: Timestamp,
    ) -> Result<VerifiedBundle, BundleError> {
        let layout = |reason: String| BundleError::Layout(reason);
        let marker: LayoutMarker = serde_json::from_slice(&files.marker)
            .map_err(|e| layout(format!("oci-layout: {e}")))?;
        if !marker.image_layout_version.starts_with("1.") {
            return Err(layout(format!(
                "imageLayoutVersion {:?} is not 1.x",
                marker.image_layout_version
            )));
        }
        let index: Index =
            serde_json::from_slice(&files.index).map_err(|e| layout(format!("index.json: {e}")))?;
        if index.schema_version != 2 {
            return Err(layout("index.json: schemaVersion is not 2".to_owned()));
        }
        let [manifest_descriptor] = index.manifests.as_slice() else {
            return Err(layout(format!(
                "index.json has {} manifests, expected exactly one",
                index.manifests.len()
            )));
        };
        if manifest_descriptor.media_type != MEDIA_TYPE_MANIFEST {
            return Err(layout(format!(
                "index.json names a {:?}, expected an image manifest",
                manifest_descriptor.media_type
            )));
        }
        let blob = |d: &Descriptor, what: &str| -> Result<&Vec<u8>, BundleError> {
            let bytes = files
                .blobs
                .get(&d.digest)
                .ok_or_else(|| layout(format!("{what} blob {} is missing", d.digest)))?;
            if bytes.len() as u64 != d.size {
                return Err(layout(format!(
                    "{what} blob {} is {} bytes, its descriptor says {}",
                    d.digest,
                    bytes.len(),
                    d.size
                )));
            }
            Ok(bytes)
        };
        let manifest: Manifest = serde_json::from_slice(blob(manifest_descriptor, "manifest")?)
            .map_err(|e| layout(format!("manifest: {e}")))?;
        if manifest.schema_version != 2
            || manifest.media_type.as_deref() != Some(MEDIA_TYPE_MANIFEST)
        {
            return Err(layout(
                "manifest is not an OCI image manifest v1".to_owned(),
            ));
        }
        if manifest.artifact_type.as_deref() != Some(ARTIFACT_TYPE_BUNDLE) {
            return Err(layout(format!(
                "manifest artifactType is {:?}, expected {ARTIFACT_TYPE_BUNDLE:?}",
                manifest.artifact_type
            )));
        }
        if manifest.config.media_type != MEDIA_TYPE_EMPTY
            || manifest.config.digest != Digest::of(EMPTY_CONFIG)
        {
            return Err(layout(
                "manifest config is not the OCI empty descriptor".to_owned(),
            ));
        }
        blob(&manifest.config, "config")?;
        let Some((state_layer, app_layers)) = manifest.layers.split_first() else {
            return Err(layout("manifest has no layers".to_owned()));
        };
        if state_layer.media_type != MEDIA_TYPE_STATE {
            return Err(layout(format!(
                "first layer is a {:?}, expected the cluster state {MEDIA_TYPE_STATE:?}",
                state_layer.media_type
            )));
        }
        let envelope = blob(state_layer, "cluster state")?.clone();
        let mut referenced = BTreeSet::from([
            manifest_descriptor.digest,
            manifest.config.digest,
            state_layer.digest,
        ]);
        let mut app_blobs = BTreeMap::new();
        for layer in app_layers {
            if layer.media_type != MEDIA_TYPE_APP_BLOB {
                return Err(layout(format!(
                    "layer {} is a {:?}, expected an app blob",
                    layer.digest, layer.media_type
                )));
            }
            app_blobs.insert(layer.digest, blob(layer, "app")?);
            referenced.insert(layer.digest);
        }
        if let Some(extra) = files.blobs.keys().find(|d| !referenced.contains(d)) {
            return Err(layout(format!(
                "blob {extra} is not referenced by the manifest"
            )));
        }

        let state = self.verify(&envelope, trust_root, expected_cluster, last_accepted, now)?;
        let mut blobs = Vec::with_capacity(state.state.apps.len());
        for app in &state.state.apps {
            let bytes =
                app_blobs
                    .remove(&app.blob.digest)
                    .ok_or_else(|| BundleError::MissingBlob {
                        app: app.name.clone(),
                        digest: app.blob.digest,
                    })?;
            let blob = self.verify_blob(app, bytes)?;
            blobs.push(VerifiedBlob {
                app: app.name.clone(),
                digest: app.blob.digest,
                bytes: bytes.clone(),
                blob,
            });
        }
        if let Some(extra) = app_blobs.keys().next() {
            return Err(layout(format!(
                "app blob layer {extra} is not named by the signed state"
            )));
        }
        Ok(VerifiedBundle {
            state,
            envelope,
            blobs,
        })
    }
}

#[cfg(test)]
mod tests;
