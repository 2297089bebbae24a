//! `flotilla-hub init`: creates a hub's data directory (mode 0700) with everything `serve`
//! needs: the SQLite database (migrated), the signing key pair (`keygen`), the hub CA for the
//! agent API, the key that seals repository credentials, and the admin API token.
//!
//! The admin token is returned to the caller exactly once, to print; only its SHA-256 hash is
//! written (`admin-token.sha256`). It never overwrites anything: a data directory that exists
//! and is not empty is refused before a single file is written.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::failpoint::Failpoints;
use crate::keygen::{self, KeygenError};
use crate::store::sqlite::DATABASE_FILE;
use crate::store::{CredentialKey, Retention, SealError, SqliteStore, StoreError};

/// The hub CA's private key (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The hub CA's self-signed certificate (PEM).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The SHA-256 (hex) of the admin API token.
pub const ADMIN_TOKEN_HASH_FILE: &str = "admin-token.sha256";
/// Prefix of the tokens this hub issues, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "flt_";

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The data directory to create (refused when it exists and is not empty).
    #[arg(long, env = "FLOTILLA_HUB_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Do nothing, successfully, when the data directory is already initialized (for an
    /// init container that runs on every start).
    #[arg(long)]
    pub if_missing: bool,
}

/// Whether `dir` holds an initialized hub (its database and signing key).
pub fn initialized(dir: &Path) -> bool {
    dir.join(DATABASE_FILE).is_file() && dir.join(keygen::PRIVATE_KEY_FILE).is_file()
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("data directory {0} exists and is not empty; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("create signing key pair: {0}")]
    Keygen(#[from] KeygenError),
    #[error("create credentials key: {0}")]
    CredentialKey(#[from] SealError),
    #[error("create database: {0}")]
    Store(#[from] StoreError),
    #[error("create hub CA: {0}")]
    Ca(#[from] rcgen::Error),
    #[error("start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What `init` created; the token is in the clear here and nowhere else.
#[derive(Debug)]
pub struct Created {
    pub data_dir: PathBuf,
    pub keyid: flotilla_shared::KeyId,
    pub admin_token: SecretString,
}

impl Created {
    /// The report printed by `flotilla-hub init`, the admin token included (once).
    pub fn report(&self) -> String {
        let dir = self.data_dir.display();
        format!(
            "created hub data directory {dir} (mode 0700):\n  \
             {DATABASE_FILE}  SQLite database, migrated\n  \
             {sk}, {pk}  signing key pair, key id {keyid}\n  \
             {CA_KEY_FILE}, {CA_CERT_FILE}  hub CA for the agent API\n  \
             {ck}  key sealing repository credentials\n  \
             {ADMIN_TOKEN_HASH_FILE}  hash of the admin API token\n\
             admin token (shown only now; keep it in a secret store): {token}\n",
            sk = keygen::PRIVATE_KEY_FILE,
            pk = keygen::PUBLIC_KEY_FILE,
            keyid = self.keyid,
            ck = crate::store::seal::CREDENTIAL_KEY_FILE,
            token = self.admin_token.expose_secret(),
        )
    }
}

/// The SHA-256 (hex) of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random API token (256 bits, URL-safe).
pub fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    SecretString::from(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// Creates the data directory. Blocking: it starts its own runtime for the database.
pub fn init(args: &InitArgs) -> Result<Created, InitError> {
    let dir = &args.data_dir;
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(InitError::Exists(dir.clone()));
    }
    create_private_dir(dir)?;
    let keyid = keygen::keygen(dir)?;
    write_ca(dir)?;
    let key = CredentialKey::load_or_create(dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(InitError::Runtime)?;
    runtime.block_on(async {
        let store = SqliteStore::open(
            &dir.join(DATABASE_FILE),
            key,
            Retention::default(),
            Failpoints::none(),
        )
        .await?;
        store.close().await;
        Ok::<_, InitError>(())
    })?;
    let admin_token = new_token();
    write_new(
        &dir.join(ADMIN_TOKEN_HASH_FILE),
        format!("{}\n", token_hash(admin_token.expose_secret())).as_bytes(),
        0o600,
    )?;
    Ok(Created {
        data_dir: dir.clone(),
        keyid,
        admin_token,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), InitError> {
    let create = |source| InitError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(create)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(create)?;
    }
    Ok(())
}

/// A self-signed ECDSA P-256 CA, valid ten years, that may only sign end-entity certificates.
fn write_ca(dir: &Path) -> Result<(), InitError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "flotilla hub CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let year = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .year();
    let (month, day) = (1, 1);
    params.not_before = rcgen::date_time_ymd(i32::from(year), month, day);
    params.not_after = rcgen::date_time_ymd(i32::from(year) + 10, month, day);
    let cert = params.self_signed(&key)?;
    write_new(
        &dir.join(CA_KEY_FILE),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_new(&dir.join(CA_CERT_FILE), cert.pem().as_bytes(), 0o644)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InitError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let write = |source| InitError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(write)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_everything_once_and_stores_only_the_token_hash() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let args = InitArgs {
            data_dir: data.clone(),
            if_missing: false,
        };
        let created = init(&args).expect("init");
        let token = created.admin_token.expose_secret().to_owned();
        assert!(token.starts_with(TOKEN_PREFIX));
        for file in [
            DATABASE_FILE,
            keygen::PRIVATE_KEY_FILE,
            keygen::PUBLIC_KEY_FILE,
            CA_KEY_FILE,
            CA_CERT_FILE,
            crate::store::seal::CREDENTIAL_KEY_FILE,
        ] {
            assert!(data.join(file).is_file(), "{file}");
        }
        let hash = std::fs::read_to_string(data.join(ADMIN_TOKEN_HASH_FILE)).expect("hash");
        assert_eq!(hash.trim(), token_hash(&token));
        assert!(!hash.contains(&token));
        assert!(created.report().contains(&token));
        let ca = std::fs::read_to_string(data.join(CA_CERT_FILE)).expect("ca");
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&data.join(CA_KEY_FILE)), 0o600);
        }
        let err = init(&args).expect_err("exists");
        assert!(matches!(err, InitError::Exists(_)), "{err}");
        assert!(initialized(&data), "what --if-missing checks");
        assert!(!initialized(dir.path()));
    }
}
