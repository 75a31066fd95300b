//! The token cache: one JSON file per (issuer, client id, scopes, grant, username), in a
//! directory only the user can read (0700, files 0600), replaced atomically (write a temporary
//! file, then rename), and guarded by an exclusive lock on a sibling `.lock` file so that
//! parallel invocations for the same key do one login or one refresh between them: the others
//! wait for the lock and then find the fresh entry.
//!
//! A file that does not parse, is of another version, or belongs to another key is treated as
//! absent and replaced by the next successful login; it never stops the plugin.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::LoginError;

const VERSION: u32 = 1;
const SUFFIX: &str = ".json";
const LOCK_SUFFIX: &str = ".lock";

/// What identifies a cache entry.
#[derive(Debug, Clone, Serialize)]
pub struct CacheKey {
    /// `--oidc-issuer-url`.
    pub issuer: String,
    /// `--oidc-client-id`.
    pub client_id: String,
    /// The scopes requested, sorted.
    pub scopes: Vec<String>,
    /// The grant type name.
    pub grant: String,
    /// `--username`, for the password grant.
    pub username: Option<String>,
    /// Whether the access token is handed out instead of the ID token.
    pub access_token: bool,
}

impl CacheKey {
    /// The file name stem: a SHA-256 of the key, so no flag value ends up in a path.
    pub fn stem(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One cached login.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Format version.
    pub version: u32,
    /// The key it was written for (a file under another key's name is foreign).
    pub key: String,
    /// The ID token, when the provider issued one.
    pub id_token: Option<String>,
    /// The access token.
    pub access_token: Option<String>,
    /// The refresh token.
    pub refresh_token: Option<String>,
    /// When the credential handed to kubectl expires (Unix seconds), if known.
    pub expiry: Option<i64>,
}

impl Entry {
    /// A new entry for `key`.
    pub fn new(key: &CacheKey) -> Entry {
        Entry {
            version: VERSION,
            key: key.stem(),
            id_token: None,
            access_token: None,
            refresh_token: None,
            expiry: None,
        }
    }
}

/// The cache directory.
pub struct TokenCache {
    dir: PathBuf,
}

/// Held while one invocation works on a key; released on drop (and by the OS if we die).
pub struct CacheLock {
    _file: File,
}

impl TokenCache {
    /// Creates the directory (0700) if needed.
    pub fn open(dir: &Path) -> Result<TokenCache, LoginError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| unwritable(dir, &e))?;
        Ok(TokenCache { dir: dir.to_path_buf() })
    }

    fn path(&self, key: &CacheKey, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", key.stem()))
    }

    /// Takes the key's exclusive lock, waiting for another invocation that holds it.
    pub async fn lock(&self, key: &CacheKey) -> Result<CacheLock, LoginError> {
        let path = self.path(key, LOCK_SUFFIX);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| unwritable(&self.dir, &e))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            file.lock()
                .map_err(|e| LoginError::Cache(format!("cannot lock the token cache in {}: {e}", dir.display())))?;
            Ok(CacheLock { _file: file })
        })
        .await
        .map_err(|e| LoginError::Cache(format!("cannot lock the token cache: {e}")))?
    }

    /// The key's entry, or `None` when absent, unreadable, corrupt or foreign.
    pub fn read(&self, key: &CacheKey) -> Option<Entry> {
        let path = self.path(key, SUFFIX);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(e) if e.version == VERSION && e.key == key.stem() => Some(e),
            _ => {
                eprintln!("note: ignoring the unreadable token cache file {} (it will be replaced)", path.display());
                None
            }
        }
    }

    /// Replaces the key's entry atomically: a reader sees the old file or the new one, never a
    /// part of either.
    pub fn write(&self, key: &CacheKey, entry: &Entry) -> Result<(), LoginError> {
        let path = self.path(key, SUFFIX);
        let tmp = self.dir.join(format!(".{}.{}.tmp", key.stem(), std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
            // An existing temporary file keeps its mode through `open`: set it again.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&serde_json::to_vec(entry).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            unwritable(&self.dir, &e)
        })
    }

    /// Removes every cache and lock file (what `login clean` does). Returns how many.
    pub fn clean(dir: &Path) -> Result<usize, LoginError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(LoginError::Cache(format!("cannot read {}: {e}", dir.display()))),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(SUFFIX) || name.ends_with(LOCK_SUFFIX) || name.ends_with(".tmp");
            if ours && entry.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| LoginError::Cache(format!("cannot remove {}: {e}", entry.path().display())))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn unwritable(dir: &Path, e: &std::io::Error) -> LoginError {
    LoginError::Cache(format!(
        "cannot write the token cache in {}: {e}; make it writable or choose another --token-cache-dir",
        dir.display()
    ))
}

/// The default cache directory: `~/.kube/cache/tokenreview-gateway-login`.
pub fn default_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".kube").join("cache").join("tokenreview-gateway-login")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(grant: &str) -> CacheKey {
        CacheKey {
            issuer: "https://idp.example.com".into(),
            client_id: "kubectl".into(),
            scopes: vec!["email".into(), "openid".into()],
            grant: grant.into(),
            username: None,
            access_token: false,
        }
    }

    #[test]
    fn entries_round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("a/b");
        let cache = TokenCache::open(&cache_dir).unwrap();
        let k = key("authcode");
        let mut e = Entry::new(&k);
        e.id_token = Some("id".into());
        cache.write(&k, &e).unwrap();
        assert_eq!(cache.read(&k).unwrap().id_token.as_deref(), Some("id"));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache_dir), 0o700);
        assert_eq!(mode(&cache_dir.join(format!("{}.json", k.stem()))), 0o600);
        // Another grant is another file.
        assert!(cache.read(&key("device-code")).is_none());
    }

    #[test]
    fn corrupt_and_foreign_files_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path()).unwrap();
        let k = key("authcode");
        let path = dir.path().join(format!("{}.json", k.stem()));
        std::fs::write(&path, b"{\"version\":1,").unwrap();
        assert!(cache.read(&k).is_none());
        let mut foreign = Entry::new(&key("password"));
        foreign.id_token = Some("other".into());
        std::fs::write(&path, serde_json::to_vec(&foreign).unwrap()).unwrap();
        assert!(cache.read(&k).is_none());
    }

    #[test]
    fn clean_removes_only_cache_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(dir.path()).unwrap();
        let k = key("authcode");
        cache.write(&k, &Entry::new(&k)).unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"x").unwrap();
        assert_eq!(TokenCache::clean(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep.txt").exists());
        assert_eq!(TokenCache::clean(&dir.path().join("missing")).unwrap(), 0);
    }
}
