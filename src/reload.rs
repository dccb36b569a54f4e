//! The single writer of the live snapshot: store events → rebuild off the request path → one
//! atomic publish. In-flight requests finish on the snapshot they loaded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use switchyard_sdk::UpstreamIo;

use crate::background::BackgroundWork;
use crate::cache::MirrorCache;
use crate::mirror::Mirror;
use crate::snapshot::Snapshot;
use crate::state::ReloadState;
use crate::store::WatchMessage;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to reach an unreachable store.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Builds and publishes a snapshot from `mirror`, reusing what did not change, starts and stops
/// the plugins' background work to match, then refreshes the local cache (etcd) so a restart
/// while the store is down serves this config.
async fn publish(state: &ReloadState, mirror: &Mirror, live: &mut Arc<Snapshot>, background: &mut BackgroundWork) {
    let started = std::time::Instant::now();
    let snapshot =
        Snapshot::build(&mirror.resources, &state.group_prefix, mirror.revision, &state.compiler, Some(live));
    tracing::debug!(revision = mirror.revision, routes = snapshot.routes.len(), took = ?started.elapsed(), "snapshot published");
    *live = Arc::new(snapshot);
    state.live.publish(Arc::clone(live));
    background.sync(live);
    state.status.set_rejected(&live.rejected);
    state.status.advance(mirror.revision);
    save_cache(state.cache.as_ref(), mirror).await;
}

/// Writes `mirror` to the node's local cache, when it has one. A failure is logged, never fatal:
/// the cache only matters for a later start while the store is down.
pub async fn save_cache(cache: Option<&MirrorCache>, mirror: &Mirror) {
    let Some(cache) = cache.cloned() else { return };
    let copy = Mirror { resources: mirror.resources.clone(), revision: mirror.revision };
    let path = cache.path().to_path_buf();
    match tokio::task::spawn_blocking(move || cache.save(&copy)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(path = %path.display(), error = %err, "cannot write the snapshot cache"),
        Err(err) => tracing::warn!(error = %err, "the snapshot cache task failed"),
    }
}

/// Follows the store until `shutdown` flips: watch from the mirror's revision + 1, coalesce each
/// burst of events into one rebuild, and resync in full when the watch is lost or compacted.
/// While the store is unreachable the last snapshot keeps serving and every retry waits twice as
/// long as the one before, up to [`MAX_BACKOFF`]. A mirror read from the local cache is replaced
/// by a full listing first: the store may have changed in any way meanwhile.
///
/// `live` is the snapshot the node starts with (already published).
pub async fn follow(
    state: ReloadState,
    mut live: Arc<Snapshot>,
    mut mirror: Mirror,
    mut shutdown: watch::Receiver<bool>,
) {
    let io = Arc::clone(&state.compiler.transport) as Arc<dyn UpstreamIo>;
    let mut background = BackgroundWork::new(io, Arc::clone(&state.status.background));
    background.sync(&live);
    let mut backoff = MIN_BACKOFF;
    let mut in_sync = !state.status.is_cached();
    loop {
        if !in_sync {
            match Mirror::load(state.store.as_ref(), &state.group_prefix).await {
                Ok(fresh) => {
                    mirror = fresh;
                    publish(&state, &mirror, &mut live, &mut background).await;
                    if state.status.caught_up() {
                        tracing::info!(revision = mirror.revision, "config store reachable again: caught up");
                    }
                    in_sync = true;
                }
                Err(err) => {
                    tracing::warn!(error = %err, ?backoff, "config store resync failed; serving the last snapshot");
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let watched = state.store.watch(&state.group_prefix, mirror.revision + 1).await;
        let mut events = match watched {
            Ok(rx) => rx,
            Err(err) => {
                tracing::warn!(error = %err, ?backoff, "cannot watch the config store; retrying");
                if sleep_or_shutdown(backoff, &mut shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                message = events.recv() => message,
                _ = shutdown.changed() => return,
            };
            let mut resync = false;
            match message {
                Some(WatchMessage::Events(batch)) => {
                    mirror.apply(batch);
                    // Coalesce: take whatever else already arrived before rebuilding once.
                    while let Ok(more) = events.try_recv() {
                        match more {
                            WatchMessage::Events(batch) => mirror.apply(batch),
                            WatchMessage::Progress(revision) => mirror.revision = mirror.revision.max(revision),
                            WatchMessage::Resync => resync = true,
                        }
                    }
                    publish(&state, &mirror, &mut live, &mut background).await;
                    backoff = MIN_BACKOFF;
                }
                Some(WatchMessage::Progress(revision)) => {
                    mirror.revision = mirror.revision.max(revision);
                    state.status.advance(revision);
                }
                Some(WatchMessage::Resync) | None => resync = true,
            }
            if resync {
                in_sync = false;
                break;
            }
        }
    }
}

/// Sleeps; `true` when shutdown was asked for meanwhile.
async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.changed() => true,
    }
}
