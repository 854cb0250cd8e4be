//! glibc's allocator, tuned for a daemon that lives for months.
//!
//! By default glibc gives every thread that allocates an arena of its own, up to eight per core. The runner's
//! threads come and go: tokio's blocking pool starts one for each file write, archive extraction and DNS lookup
//! and lets it go after ten idle seconds. A buffer freed in one of those arenas is kept for its next allocation, so
//! a cache transfer left the daemon holding what each of a dozen arenas had once needed: the remote cache
//! benchmark (`bench/cache/run.sh`) peaked at 62-70 MiB, and 48 MiB with two arenas (BENCHMARKS.md, "glibc
//! arenas"). A few arenas are enough for a runner, whose threads mostly wait.
//!
//! An operator who tunes the allocator through the environment (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES=glibc.malloc.*`)
//! keeps their setting: nothing is changed then. Jobs never inherit this; it is not an environment variable.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variables through which glibc reads allocator settings.
const USER_SETTINGS: &[&str] = &[
    "MALLOC_ARENA_MAX",
    "MALLOC_ARENA_TEST",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
];

/// The arena limit for a machine with `cores` cores: one per core, at least two (so that the async workers and a
/// blocking thread rarely wait on one lock) and at most four (the runner's allocations are not its bottleneck).
pub fn arena_limit(cores: usize) -> i32 {
    // Clamped to 2..=4 first, so the conversion cannot fail.
    i32::try_from(cores.clamp(2, 4)).unwrap_or(4)
}

/// Whether the environment already tunes glibc's allocator.
pub fn user_tuned(get: impl Fn(&str) -> Option<OsString>) -> bool {
    USER_SETTINGS.iter().any(|name| get(name).is_some())
        || get("GLIBC_TUNABLES").is_some_and(|t| t.to_string_lossy().contains("glibc.malloc."))
}

/// Applies [`arena_limit`] unless the environment tunes the allocator itself. Called first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    if user_tuned(|name| std::env::var_os(name)) {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    set_arena_max(arena_limit(cores));
}

/// Elsewhere (musl, other systems) there is no such allocator to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

/// Gives the memory a finished job freed back to the system. glibc returns a heap's free pages only from its top,
/// so what a cache transfer or a large log used stayed resident between jobs (20 MiB after a 1 GiB remote cache
/// restore, BENCHMARKS.md). Runs on a blocking thread (it walks every arena), not waited for, so the job's slot is
/// free at once; one trim at a time: jobs that end together need one.
pub fn release_free_memory() {
    static TRIMMING: AtomicBool = AtomicBool::new(false);
    if TRIMMING.swap(true, Ordering::AcqRel) {
        return;
    }
    drop(tokio::task::spawn_blocking(|| {
        trim();
        TRIMMING.store(false, Ordering::Release);
    }));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: `malloc_trim` takes the allocator's own locks and touches no memory of ours that is in use.
    let _ = unsafe { nix::libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

// The one foreign call: `mallopt` takes two integers, touches nothing of ours, and reports a refusal as 0 (the
// default is then kept, which is harmless).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) {
    // SAFETY: `mallopt` is glibc's documented interface for these settings; it has no pointer arguments and
    // takes the allocator's own lock.
    let _ = unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, arenas) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_cores_within_two_to_four() {
        assert_eq!(arena_limit(1), 2);
        assert_eq!(arena_limit(2), 2);
        assert_eq!(arena_limit(3), 3);
        assert_eq!(arena_limit(64), 4);
    }

    #[test]
    fn an_operator_setting_is_left_alone() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert!(!user_tuned(env(&[])));
        assert!(!user_tuned(env(&[(
            "GLIBC_TUNABLES",
            "glibc.rtld.optional_static_tls=4096"
        )])));
        assert!(user_tuned(env(&[("MALLOC_ARENA_MAX", "8")])));
        assert!(user_tuned(env(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")])));
    }
}
