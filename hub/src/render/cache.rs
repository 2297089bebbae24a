//! The render cache: the key of a render, computed purely from (commit, path, parameters),
//! and a bounded in-memory map from keys to rendered objects, least recently used entry
//! evicted first. Concurrent requests for one key wait for a single render, so a hundred
//! clusters with the same parameters cost one `helm template`. Failures are not cached: the
//! next request tries again. It does no I/O.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// Default number of renders kept.
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;

/// What one render yields, shared between the clusters that asked for it.
pub type Rendered = Arc<[Value]>;

/// The identity of a render: SHA-256 over the commit, the source path and the canonical JSON
/// (RFC 8785) of every other parameter that changes the output.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of rendering `path` at `commit` with `parameters`.
    pub fn new(commit: &str, path: &str, parameters: &Value) -> Self {
        let canonical = serde_json_canonicalizer::to_vec(parameters)
            .expect("a serde_json::Value always serializes");
        let mut hasher = Sha256::new();
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [commit.as_bytes(), path.as_bytes(), &canonical] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

struct Entry {
    cell: Arc<OnceCell<Rendered>>,
    last_used: u64,
}

struct Entries {
    clock: u64,
    map: HashMap<CacheKey, Entry>,
}

/// A bounded map from render keys to rendered objects.
pub struct RenderCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl fmt::Debug for RenderCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl RenderCache {
    /// A cache of at most `capacity` renders (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: Mutex::new(Entries {
                clock: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// How many renders are kept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves the map consistent (every step is a single
        // insert or remove), so a poisoned lock is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cell for `key`, created (and the least recently used entry evicted) if absent.
    fn cell(&self, key: CacheKey) -> Arc<OnceCell<Rendered>> {
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        if let Some(entry) = entries.map.get_mut(&key) {
            entry.last_used = now;
            return entry.cell.clone();
        }
        if entries.map.len() >= self.capacity
            && let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| *key)
        {
            entries.map.remove(&oldest);
        }
        let cell = Arc::new(OnceCell::new());
        entries.map.insert(
            key,
            Entry {
                cell: cell.clone(),
                last_used: now,
            },
        );
        cell
    }

    /// The cached render of `key`, or the result of `render` (run at most once at a time per
    /// key; an error is returned to its caller and not kept).
    pub async fn get_or_render<F, Fut, E>(&self, key: CacheKey, render: F) -> Result<Rendered, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Rendered, E>>,
    {
        let cell = self.cell(key);
        cell.get_or_try_init(render).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    #[test]
    fn keys_depend_on_every_part_and_not_on_map_order() {
        let params = json!({"kind": "helm", "helm": {"parameters": [{"name": "a", "value": "1"}]}});
        let same = serde_json::from_str::<Value>(
            r#"{"helm": {"parameters": [{"value": "1", "name": "a"}]}, "kind": "helm"}"#,
        )
        .expect("json");
        let base = CacheKey::new("abc", "charts/web", &params);
        assert_eq!(base, CacheKey::new("abc", "charts/web", &same));
        assert_ne!(base, CacheKey::new("abd", "charts/web", &params));
        assert_ne!(base, CacheKey::new("abc", "charts/api", &params));
        assert_ne!(
            base,
            CacheKey::new("abc", "charts/web", &json!({"kind": "helm"}))
        );
        assert_ne!(
            CacheKey::new("ab", "c", &Value::Null),
            CacheKey::new("a", "bc", &Value::Null)
        );
        assert_eq!(base.to_string().len(), 64);
    }

    fn rendered(name: &str) -> Rendered {
        Arc::from(vec![json!({"metadata": {"name": name}})])
    }

    #[tokio::test]
    async fn renders_once_per_key_and_evicts_the_least_recently_used() {
        let cache = RenderCache::new(2);
        let runs = AtomicUsize::new(0);
        let render = |name: &'static str| {
            let runs = &runs;
            move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(rendered(name))
            }
        };
        let (a, b, c) = (
            CacheKey::new("1", "a", &Value::Null),
            CacheKey::new("1", "b", &Value::Null),
            CacheKey::new("1", "c", &Value::Null),
        );
        for _ in 0..3 {
            cache.get_or_render(a, render("a")).await.expect("a");
        }
        cache.get_or_render(b, render("b")).await.expect("b");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // `a` was used before `b`; touching it makes `b` the oldest, evicted by `c`.
        cache.get_or_render(a, render("a")).await.expect("a");
        cache.get_or_render(c, render("c")).await.expect("c");
        assert_eq!(cache.len(), 2);
        cache.get_or_render(a, render("a")).await.expect("a");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        cache.get_or_render(b, render("b")).await.expect("b");
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn failures_are_not_kept() {
        let cache = RenderCache::new(4);
        let key = CacheKey::new("1", "a", &Value::Null);
        let failed = cache
            .get_or_render(key, || async { Err::<Rendered, _>("boom") })
            .await;
        assert_eq!(failed.err(), Some("boom"));
        let ok = cache
            .get_or_render(key, || async { Ok::<_, &str>(rendered("a")) })
            .await
            .expect("second try renders");
        assert_eq!(ok[0]["metadata"]["name"], "a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_one_render() {
        let cache = Arc::new(RenderCache::new(4));
        let runs = Arc::new(AtomicUsize::new(0));
        let key = CacheKey::new("1", "a", &Value::Null);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, runs) = (cache.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_render(key, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        Ok::<_, ()>(rendered("a"))
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.expect("joins").expect("renders");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
